// Masks are CV_8U with 0/255 so that ~mask and & behave as logical operations.
// Metrics of a denoised image against the simulator's noiseless truth; definitions in
// evaluate_denoise.hpp.
#include "astroflow/evaluate_denoise.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "astroflow/error.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/robust_stats.hpp"
#include "astroflow/simulate.hpp"
#include "json_number.hpp"

namespace astroflow {
namespace {

/// image - truth, minus its median per mesh, bilinear between mesh centres; returned as the
/// sky-free image (truth + residual - sky).
cv::Mat remove_residual_sky(const cv::Mat& image, const cv::Mat& truth, int mesh) {
  const int nx = std::max(1, (image.cols + mesh - 1) / mesh);
  const int ny = std::max(1, (image.rows + mesh - 1) / mesh);
  cv::Mat grid(ny, nx, CV_64F, cv::Scalar(0));
  for (int j = 0; j < ny; ++j) {
    for (int i = 0; i < nx; ++i) {
      std::vector<double> v;
      for (int y = j * mesh; y < std::min(image.rows, (j + 1) * mesh); ++y) {
        for (int x = i * mesh; x < std::min(image.cols, (i + 1) * mesh); ++x) {
          const double d = image.at<float>(y, x) - truth.at<float>(y, x);
          if (std::isfinite(d)) v.push_back(d);
        }
      }
      grid.at<double>(j, i) = v.empty() ? 0.0 : median_of(std::move(v));
    }
  }
  auto interp = [&](double c, int n, int& i0, double& f) {
    const double g = (c + 0.5) / mesh - 0.5;  // mesh-centre coordinates
    i0 = std::clamp(static_cast<int>(std::floor(g)), 0, std::max(0, n - 2));
    f = n > 1 ? std::clamp(g - i0, 0.0, 1.0) : 0.0;
  };
  cv::Mat out(image.size(), CV_32F);
  for (int y = 0; y < image.rows; ++y) {
    int j0 = 0;
    double fy = 0.0;
    interp(y, ny, j0, fy);
    const int j1 = std::min(ny - 1, j0 + 1);
    for (int x = 0; x < image.cols; ++x) {
      int i0 = 0;
      double fx = 0.0;
      interp(x, nx, i0, fx);
      const int i1 = std::min(nx - 1, i0 + 1);
      const double s =
          (1 - fy) * ((1 - fx) * grid.at<double>(j0, i0) + fx * grid.at<double>(j0, i1)) +
          fy * ((1 - fx) * grid.at<double>(j1, i0) + fx * grid.at<double>(j1, i1));
      out.at<float>(y, x) = static_cast<float>(image.at<float>(y, x) - s);
    }
  }
  return out;
}

double ssim(const cv::Mat& a_in, const cv::Mat& b_in, const cv::Mat& valid, double lo, double hi) {
  cv::Mat a;
  cv::Mat b;
  a_in.convertTo(a, CV_64F);
  b_in.convertTo(b, CV_64F);
  a.setTo(0.0, ~valid);
  b.setTo(0.0, ~valid);
  a = cv::max(cv::min(a, hi), lo);
  b = cv::max(cv::min(b, hi), lo);
  const double range = hi - lo;
  const double c1 = (0.01 * range) * (0.01 * range);
  const double c2 = (0.03 * range) * (0.03 * range);
  auto blur = [](const cv::Mat& m) {
    cv::Mat o;
    cv::GaussianBlur(m, o, cv::Size(11, 11), 1.5, 1.5, cv::BORDER_REFLECT);
    return o;
  };
  const cv::Mat mu_a = blur(a);
  const cv::Mat mu_b = blur(b);
  const cv::Mat saa = blur(a.mul(a)) - mu_a.mul(mu_a);
  const cv::Mat sbb = blur(b.mul(b)) - mu_b.mul(mu_b);
  const cv::Mat sab = blur(a.mul(b)) - mu_a.mul(mu_b);
  cv::Mat num = (2 * mu_a.mul(mu_b) + c1).mul(2 * sab + c2);
  cv::Mat den = (mu_a.mul(mu_a) + mu_b.mul(mu_b) + c1).mul(saa + sbb + c2);
  cv::Mat map;
  cv::divide(num, den, map);
  return cv::mean(map, valid)[0];
}

std::vector<int> tile_edges(int n, int tile, int overlap) {
  std::vector<int> starts;
  if (n > tile) {
    const int step = std::max(1, tile - overlap);
    for (int p = 0; p + tile < n; p += step) starts.push_back(p);
    starts.push_back(n - tile);
  }
  std::vector<int> edges;
  for (int s : starts) {
    if (s > 0) edges.push_back(s);
    if (s + tile < n) edges.push_back(s + tile);
  }
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return edges;
}

/// Largest |mean over background pixels of r[p] - r[p-1]| over segments of `seg` along the
/// line, for each position p in `lines`; `vertical` lines are columns.
// Mean of r[p] - r[p - 1] across line p (a column when vertical, else a row) over positions
// [t0, t1) along it where both pixels are background; n gets the number of pairs used.
double mean_step(const cv::Mat& r, const cv::Mat& bg, int p, int t0, int t1, bool vertical,
                 int& n) {
  double sum = 0.0;
  n = 0;
  for (int t = t0; t < t1; ++t) {
    const int y1 = vertical ? t : p;
    const int x1 = vertical ? p : t;
    const int y0 = vertical ? t : p - 1;
    const int x0 = vertical ? p - 1 : t;
    if (bg.at<unsigned char>(y1, x1) == 0 || bg.at<unsigned char>(y0, x0) == 0) continue;
    sum += static_cast<double>(r.at<float>(y1, x1)) - r.at<float>(y0, x0);
    ++n;
  }
  return n > 0 ? sum / n : 0.0;
}

double max_jump(const cv::Mat& r, const cv::Mat& bg, const std::vector<int>& lines, int seg,
                bool vertical) {
  double worst = 0.0;
  const int len = vertical ? r.rows : r.cols;
  for (int p : lines) {
    if (p < 1 || p >= (vertical ? r.cols : r.rows)) continue;
    for (int s0 = 0; s0 < len; s0 += seg) {
      int n = 0;
      const double m = mean_step(r, bg, p, s0, std::min(len, s0 + seg), vertical, n);
      if (n >= seg / 4) worst = std::max(worst, std::abs(m));
    }
  }
  return worst;
}

// Mean over the background pixels of one whole column (vertical) or row of r[p] - r[p - 1], for
// every p at least `margin` pixels inside the image; lines with too few background pairs are
// skipped.
std::vector<double> line_steps(const cv::Mat& r, const cv::Mat& bg, bool vertical, int margin) {
  std::vector<double> out;
  const int n_lines = vertical ? r.cols : r.rows;
  const int len = vertical ? r.rows : r.cols;
  for (int p = margin; p < n_lines - margin; ++p) {
    int n = 0;
    const double m = mean_step(r, bg, p, 0, len, vertical, n);
    if (n >= len / 4) out.push_back(std::abs(m));
  }
  return out;
}

const Column& need(const Catalog& c, std::string_view name) {
  const Column* col = c.find(name);
  if (col == nullptr) throw FatalError("truth table: missing column " + std::string(name));
  return *col;
}

}  // namespace

DenoiseEvaluation evaluate_denoise(const cv::Mat& noisy_in, const cv::Mat& denoised_in,
                                   const cv::Mat& truth, const Catalog& truth_table,
                                   const DenoiseEvalOptions& o) {
  if (noisy_in.size() != truth.size() || denoised_in.size() != truth.size() ||
      noisy_in.type() != CV_32F || denoised_in.type() != CV_32F || truth.type() != CV_32F) {
    throw FatalError("evaluate denoise: noisy, denoised and truth must be CV_32F of one size");
  }
  DenoiseEvaluation e;
  const cv::Mat noisy = remove_residual_sky(noisy_in, truth, o.sky_mesh_pix);
  const cv::Mat den = remove_residual_sky(denoised_in, truth, o.sky_mesh_pix);
  const int w = truth.cols;
  const int h = truth.rows;

  std::vector<double> resid;
  cv::Mat finite(truth.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const float a = noisy.at<float>(y, x);
      const float d = den.at<float>(y, x);
      if (std::isfinite(a) && std::isfinite(d) && std::isfinite(truth.at<float>(y, x))) {
        finite.at<unsigned char>(y, x) = 255;
        resid.push_back(a - truth.at<float>(y, x));
      }
    }
  }
  const double sigma = mad_sigma(resid);
  e.sigma_noisy = sigma;

  cv::Mat artifact(truth.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (finite.at<unsigned char>(y, x) &&
          std::abs(noisy.at<float>(y, x) - truth.at<float>(y, x)) > 6.0 * sigma) {
        artifact.at<unsigned char>(y, x) = 255;
      }
    }
  }
  cv::dilate(artifact, artifact, cv::getStructuringElement(cv::MORPH_RECT, cv::Size(5, 5)));
  const cv::Mat usable = finite & (artifact == 0);
  const cv::Mat bg = usable & (truth < 0.1 * sigma);

  double s2n = 0.0;
  double s2d = 0.0;
  double a2n = 0.0;
  double a2d = 0.0;
  std::size_t nb = 0;
  std::size_t na = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (!usable.at<unsigned char>(y, x)) continue;
      const double rn = noisy.at<float>(y, x) - truth.at<float>(y, x);
      const double rd = den.at<float>(y, x) - truth.at<float>(y, x);
      a2n += rn * rn;
      a2d += rd * rd;
      ++na;
      if (bg.at<unsigned char>(y, x)) {
        s2n += rn * rn;
        s2d += rd * rd;
        ++nb;
      }
    }
  }
  e.background_pixels = nb;
  e.rms_noisy = std::sqrt(s2n / std::max<std::size_t>(1, nb));
  e.rms_denoised = std::sqrt(s2d / std::max<std::size_t>(1, nb));
  e.noise_reduction = e.rms_noisy / e.rms_denoised;
  double peak = 0.0;
  cv::minMaxLoc(truth, nullptr, &peak);
  e.psnr_noisy_db = 20.0 * std::log10(peak / std::sqrt(a2n / std::max<std::size_t>(1, na)));
  e.psnr_denoised_db = 20.0 * std::log10(peak / std::sqrt(a2d / std::max<std::size_t>(1, na)));
  e.psnr_gain_db = e.psnr_denoised_db - e.psnr_noisy_db;
  e.ssim_noisy = ssim(noisy, truth, usable, -3 * sigma, 30 * sigma);
  e.ssim_denoised = ssim(den, truth, usable, -3 * sigma, 30 * sigma);

  // Aperture photometry of truth sources.
  const Column& xs = need(truth_table, "X_IMAGE");
  const Column& ys = need(truth_table, "Y_IMAGE");
  const Column& types = need(truth_table, "TYPE");
  const Column& reff = need(truth_table, "R_EFF");
  const Column& snr = need(truth_table, "SNR");
  const std::size_t nbins = o.snr_edges.size() > 1 ? o.snr_edges.size() - 1 : 0;
  std::vector<std::vector<double>> bn(nbins);
  std::vector<std::vector<double>> bd(nbins);
  std::vector<double> fwhm_t;
  std::vector<double> dfw;
  std::vector<double> dfw_noisy;
  auto fwhm_of = [&](const cv::Mat& img, double x, double y) {
    const Moments m = measure_moments(img, x, y, 2.0 * o.psf_fwhm_pix);
    return 2.3548 * std::sqrt(std::max(0.0, 0.5 * (m.ixx + m.iyy)));
  };
  for (std::size_t i = 0; i < truth_table.rows(); ++i) {
    const double x = xs.as_double(i) - 1.0;
    const double y = ys.as_double(i) - 1.0;
    const bool star = types.as_text(i) == "star";
    const double r = star ? 1.5 * o.psf_fwhm_pix : 1.5 * reff.as_double(i);
    if (!(r > 0) || x - r < 0 || y - r < 0 || x + r > w - 1 || y + r > h - 1) continue;
    bool clean = true;
    for (int yy = static_cast<int>(y - r); yy <= static_cast<int>(y + r) + 1 && clean; ++yy) {
      for (int xx = static_cast<int>(x - r); xx <= static_cast<int>(x + r) + 1; ++xx) {
        if (yy >= 0 && yy < h && xx >= 0 && xx < w && !usable.at<unsigned char>(yy, xx)) {
          clean = false;
          break;
        }
      }
    }
    if (!clean) continue;
    const double ft = aperture_sum(truth, x, y, r).flux;
    if (!(ft > 0)) continue;
    const double s = snr.as_double(i);
    for (std::size_t b = 0; b < nbins; ++b) {
      if (s >= o.snr_edges[b] && s < o.snr_edges[b + 1]) {
        const FluxSample fs{i, s, aperture_sum(noisy, x, y, r).flux / ft - 1.0,
                            aperture_sum(den, x, y, r).flux / ft - 1.0};
        bn[b].push_back(fs.error_noisy);
        bd[b].push_back(fs.error_denoised);
        e.flux_samples.push_back(fs);
      }
    }
    if (star && s >= o.star_snr_min) {
      const double ftw = fwhm_of(truth, x, y);
      if (ftw > 0) {
        fwhm_t.push_back(ftw);
        dfw.push_back(fwhm_of(den, x, y) / ftw - 1.0);
        dfw_noisy.push_back(fwhm_of(noisy, x, y) / ftw - 1.0);
      }
    }
  }
  for (std::size_t b = 0; b < nbins; ++b) {
    FluxBiasBin fb;
    fb.snr_min = o.snr_edges[b];
    fb.snr_max = o.snr_edges[b + 1];
    fb.count = bn[b].size();
    fb.median_bias_noisy = median_of(bn[b]);
    fb.median_bias_denoised = median_of(bd[b]);
    fb.scatter_noisy = mad_sigma(bn[b]);
    fb.scatter_denoised = mad_sigma(bd[b]);
    e.flux_bins.push_back(fb);
  }
  e.stars_measured = fwhm_t.size();
  e.star_fwhm_truth_pix = median_of(fwhm_t);
  e.star_fwhm_change = median_of(dfw);
  e.star_fwhm_change_noisy = median_of(dfw_noisy);

  {
    // Any seam (network tiles, the pipeline's stitch lines) shows as a step along a whole line.
    const cv::Mat r = den - truth;
    std::vector<double> steps = line_steps(r, bg, true, 8);
    const std::vector<double> rows = line_steps(r, bg, false, 8);
    steps.insert(steps.end(), rows.begin(), rows.end());
    if (!steps.empty()) {
      e.max_line_step_sigma = *std::max_element(steps.begin(), steps.end()) / sigma;
      e.median_line_step_sigma = median_of(steps) / sigma;
    }
  }
  if (o.tile_pix > 0) {
    const cv::Mat r = den - truth;
    const std::vector<int> vx = tile_edges(w, o.tile_pix, o.overlap_pix);
    const std::vector<int> vy = tile_edges(h, o.tile_pix, o.overlap_pix);
    auto shifted = [&](const std::vector<int>& edges, int n) {
      std::vector<int> c;
      for (int p : edges) {
        const int q = p + o.tile_pix / 4 < n ? p + o.tile_pix / 4 : p - o.tile_pix / 4;
        bool near_edge = false;
        for (int q2 : edges) near_edge = near_edge || std::abs(q2 - q) < 8;
        if (!near_edge) c.push_back(q);
      }
      return c;
    };
    e.max_seam_jump_sigma =
        std::max(max_jump(r, bg, vx, o.tile_pix, true), max_jump(r, bg, vy, o.tile_pix, false)) /
        sigma;
    e.max_control_jump_sigma = std::max(max_jump(r, bg, shifted(vx, w), o.tile_pix, true),
                                        max_jump(r, bg, shifted(vy, h), o.tile_pix, false)) /
                               sigma;
  }
  return e;
}

DenoiseEvaluation evaluate_denoise_files(const std::string& noisy_path,
                                         const std::string& denoised_path,
                                         const std::string& truth_image_path,
                                         const std::string& truth_table_path,
                                         DenoiseEvalOptions options) {
  FitsReadOptions ro;
  ro.hdu = "0";
  auto read_one = [&](const std::string& p) {
    std::vector<Frame> f = read_fits_frames(p, ro);
    if (f.empty() || f[0].failed()) throw FatalError(p + ": cannot read the primary image");
    return f[0];
  };
  const Frame noisy = read_one(noisy_path);
  const Frame den = read_one(denoised_path);
  const Frame truth = read_one(truth_image_path);
  if (const auto fw = noisy.header.get_double("PSFFWHM")) options.psf_fwhm_pix = *fw;
  return evaluate_denoise(noisy.science, den.science, truth.science,
                          read_catalog_file(truth_table_path), options);
}

std::string format_denoise_report(const DenoiseEvaluation& e) {
  std::string s;
  s += fmt::format("noise sigma (noisy, robust)      {:.5g}\n", e.sigma_noisy);
  s += fmt::format("background pixels                {}\n", e.background_pixels);
  s += fmt::format(
      "RMS vs truth, background         noisy {:.5g}  denoised {:.5g}  reduction "
      "{:.3f}x\n",
      e.rms_noisy, e.rms_denoised, e.noise_reduction);
  s += fmt::format("PSNR (dB)                        noisy {:.2f}  denoised {:.2f}  gain {:+.2f}\n",
                   e.psnr_noisy_db, e.psnr_denoised_db, e.psnr_gain_db);
  s += fmt::format("SSIM                             noisy {:.4f}  denoised {:.4f}\n", e.ssim_noisy,
                   e.ssim_denoised);
  s += "aperture flux vs truth: S/N bin, count, median bias noisy/denoised, scatter "
       "noisy/denoised\n";
  for (const auto& b : e.flux_bins) {
    s += fmt::format("  [{:g}, {:g})  {:5d}  {:+.4f} {:+.4f}   {:.4f} {:.4f}\n", b.snr_min,
                     b.snr_max, b.count, b.median_bias_noisy, b.median_bias_denoised,
                     b.scatter_noisy, b.scatter_denoised);
  }
  s += fmt::format(
      "star FWHM ({} stars, truth median {:.3f} px): change denoised {:+.4f}, "
      "noisy {:+.4f}\n",
      e.stars_measured, e.star_fwhm_truth_pix, e.star_fwhm_change, e.star_fwhm_change_noisy);
  s += fmt::format("largest tile-seam jump           {:.4f} sigma (control, off seams: {:.4f})\n",
                   e.max_seam_jump_sigma, e.max_control_jump_sigma);
  s += fmt::format("largest whole-line step         {:.4f} sigma (median over lines: {:.4f})\n",
                   e.max_line_step_sigma, e.median_line_step_sigma);
  return s;
}

std::string to_json(const DenoiseEvaluation& e) {
  nlohmann::json j;
  j["sigma_noisy"] = json_number(e.sigma_noisy);
  j["background_pixels"] = e.background_pixels;
  j["rms_noisy"] = json_number(e.rms_noisy);
  j["rms_denoised"] = json_number(e.rms_denoised);
  j["noise_reduction"] = json_number(e.noise_reduction);
  j["psnr_noisy_db"] = json_number(e.psnr_noisy_db);
  j["psnr_denoised_db"] = json_number(e.psnr_denoised_db);
  j["psnr_gain_db"] = json_number(e.psnr_gain_db);
  j["ssim_noisy"] = json_number(e.ssim_noisy);
  j["ssim_denoised"] = json_number(e.ssim_denoised);
  j["flux_bins"] = nlohmann::json::array();
  for (const FluxBiasBin& b : e.flux_bins) {
    j["flux_bins"].push_back({{"snr_min", json_number(b.snr_min)},
                              {"snr_max", json_number(b.snr_max)},
                              {"count", b.count},
                              {"median_bias_noisy", json_number(b.median_bias_noisy)},
                              {"median_bias_denoised", json_number(b.median_bias_denoised)},
                              {"scatter_noisy", json_number(b.scatter_noisy)},
                              {"scatter_denoised", json_number(b.scatter_denoised)}});
  }
  // [truth row (0-based), S/N, F_noisy / F_true - 1, F_denoised / F_true - 1] per source.
  j["flux_samples"] = nlohmann::json::array();
  for (const FluxSample& f : e.flux_samples) {
    j["flux_samples"].push_back(
        {f.truth_row, f.snr, json_number(f.error_noisy), json_number(f.error_denoised)});
  }
  j["stars_measured"] = e.stars_measured;
  j["star_fwhm_truth_pix"] = json_number(e.star_fwhm_truth_pix);
  j["star_fwhm_change"] = json_number(e.star_fwhm_change);
  j["star_fwhm_change_noisy"] = json_number(e.star_fwhm_change_noisy);
  j["max_seam_jump_sigma"] = json_number(e.max_seam_jump_sigma);
  j["max_control_jump_sigma"] = json_number(e.max_control_jump_sigma);
  j["max_line_step_sigma"] = json_number(e.max_line_step_sigma);
  j["median_line_step_sigma"] = json_number(e.median_line_step_sigma);
  return j.dump(2) + "\n";
}

}  // namespace astroflow
