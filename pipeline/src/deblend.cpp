#include <algorithm>
#include <astroflow/deblend.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <opencv2/imgproc.hpp>

namespace astroflow {

std::vector<DeblendedObject> Deblender::run(const std::vector<int>& component,
                                            double base_threshold) const {
  std::vector<DeblendedObject> out;
  double peak = -std::numeric_limits<double>::infinity();
  double total = 0.0;
  for (int p : component) {
    const double v = value(p);
    peak = std::max(peak, v);
    total += v;
  }
  if (nthresh_ <= 1 || component.size() < 2 * static_cast<std::size_t>(min_area_) ||
      !(peak > base_threshold) || base_threshold <= 0.0 || total <= 0.0) {
    out.push_back(DeblendedObject{component, false});
    return out;
  }
  levels_.resize(static_cast<std::size_t>(nthresh_));
  for (int k = 0; k < nthresh_; ++k) {
    levels_[static_cast<std::size_t>(k)] =
        base_threshold * std::pow(peak / base_threshold, static_cast<double>(k) / nthresh_);
  }
  min_flux_ = mincont_ * total;
  std::vector<std::vector<int>> cores;
  split(component, 0, cores);
  if (cores.size() < 2) {
    out.push_back(DeblendedObject{component, false});
    return out;
  }
  return assign(component, cores);
}

// Looks for the first level above `level` at which `pix` holds two or more significant
// branches; recurses into each. A branch with too little flux is not an object, so a node with
// a single significant branch keeps climbing, as in SExtractor's tree.
void Deblender::split(const std::vector<int>& pix, int level,
                      std::vector<std::vector<int>>& cores) const {
  const int w = filt_.cols;
  int x0 = w;
  int y0 = filt_.rows;
  int x1 = -1;
  int y1 = -1;
  for (int p : pix) {
    x0 = std::min(x0, p % w);
    x1 = std::max(x1, p % w);
    y0 = std::min(y0, p / w);
    y1 = std::max(y1, p / w);
  }
  const cv::Rect box(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  cv::Mat mask(box.size(), CV_8U);
  cv::Mat labels;
  for (int k = level + 1; k < nthresh_; ++k) {
    const double t = levels_[static_cast<std::size_t>(k)];
    mask.setTo(0);
    int above = 0;
    for (int p : pix) {
      if (value(p) > t) {
        mask.at<std::uint8_t>(p / w - y0, p % w - x0) = 1;
        ++above;
      }
    }
    if (above < 2 * min_area_) break;  // two branches of min_area cannot fit any more
    const int n = cv::connectedComponents(mask, labels, 8, CV_32S);
    if (n <= 2) continue;  // one branch (label 0 is the background)
    std::vector<std::vector<int>> branches(static_cast<std::size_t>(n));
    std::vector<double> flux(static_cast<std::size_t>(n), 0.0);
    for (int p : pix) {
      const int l = labels.at<int>(p / w - y0, p % w - x0);
      if (l == 0) continue;
      branches[static_cast<std::size_t>(l)].push_back(p);
      flux[static_cast<std::size_t>(l)] += value(p);
    }
    std::vector<std::size_t> significant;
    for (std::size_t l = 1; l < branches.size(); ++l) {
      // The contrast is the branch's flux above the level it was cut at, as in SExtractor's
      // parcelout() (fdflux - thresh * fdnpix > mincont * root flux): a noise bump riding on a
      // bright wing holds many pixels but little flux of its own.
      const double own = flux[l] - t * static_cast<double>(branches[l].size());
      if (static_cast<int>(branches[l].size()) >= min_area_ && own > min_flux_) {
        significant.push_back(l);
      }
    }
    if (significant.size() >= 2) {
      for (std::size_t l : significant) split(branches[l], k, cores);
      return;
    }
    if (significant.empty()) break;
  }
  cores.push_back(pix);
}

// Gives every pixel of the parent to one core: core pixels stay, the others go to the core
// whose bivariate Gaussian model (amplitude = core peak, covariance = core second moments) is
// highest there, which is how SExtractor shares the pixels below the split level.
std::vector<DeblendedObject> Deblender::assign(const std::vector<int>& component,
                                               const std::vector<std::vector<int>>& cores) const {
  const int w = filt_.cols;
  struct Model {
    double xc, yc, ixx, iyy, ixy, log_amp;
  };
  std::vector<Model> models;
  models.reserve(cores.size());
  for (const auto& core : cores) {
    double s = 0.0;
    double sx = 0.0;
    double sy = 0.0;
    double peak = 0.0;
    for (int p : core) {
      const double v = std::max(0.0, value(p));
      s += v;
      sx += v * (p % w);
      sy += v * (p / w);
      peak = std::max(peak, v);
    }
    const double xc = sx / s;
    const double yc = sy / s;
    double xx = 0.0;
    double yy = 0.0;
    double xy = 0.0;
    for (int p : core) {
      const double v = std::max(0.0, value(p));
      const double dx = (p % w) - xc;
      const double dy = (p / w) - yc;
      xx += v * dx * dx;
      yy += v * dy * dy;
      xy += v * dx * dy;
    }
    // The 1/12 px^2 of a uniform pixel keeps a compact core's covariance invertible.
    xx = xx / s + 1.0 / 12.0;
    yy = yy / s + 1.0 / 12.0;
    xy /= s;
    const double det = xx * yy - xy * xy;
    models.push_back(Model{xc, yc, yy / det, xx / det, -xy / det, std::log(peak)});
  }
  std::vector<DeblendedObject> out(cores.size());
  std::vector<int> owner(component.size(), -1);
  // Membership of core pixels: cores are disjoint.
  std::vector<int> sorted = component;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t c = 0; c < cores.size(); ++c) {
    for (int p : cores[c]) {
      const auto it = std::lower_bound(sorted.begin(), sorted.end(), p);
      owner[static_cast<std::size_t>(it - sorted.begin())] = static_cast<int>(c);
    }
  }
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    int best = owner[i];
    if (best < 0) {
      const int p = sorted[i];
      double best_score = -std::numeric_limits<double>::infinity();
      for (std::size_t c = 0; c < models.size(); ++c) {
        const Model& m = models[c];
        const double dx = (p % w) - m.xc;
        const double dy = (p / w) - m.yc;
        const double q = m.ixx * dx * dx + m.iyy * dy * dy + 2.0 * m.ixy * dx * dy;
        const double score = m.log_amp - 0.5 * q;
        if (score > best_score) {
          best_score = score;
          best = static_cast<int>(c);
        }
      }
    }
    out[static_cast<std::size_t>(best)].pix.push_back(sorted[i]);
  }
  for (auto& o : out) o.blended = true;
  return out;
}

cv::Mat gaussian_kernel_1d(double fwhm_pix) {
  const double sigma = fwhm_pix / (2.0 * std::sqrt(2.0 * std::log(2.0)));
  const int half = std::max(1, static_cast<int>(std::lround(0.7 * fwhm_pix)));
  cv::Mat k(2 * half + 1, 1, CV_32F);
  double sum = 0.0;
  for (int i = -half; i <= half; ++i) {
    const double v = std::exp(-0.5 * i * i / (sigma * sigma));
    k.at<float>(i + half) = static_cast<float>(v);
    sum += v;
  }
  k /= sum;
  return k;
}

}  // namespace astroflow
