// `astroflow simulate field|cutouts`: thin CLI over simulate.hpp (docs/simulator.md).
#include <iostream>

#include "astroflow/simulate_survey.hpp"
#include "cli_commands.hpp"

namespace astroflow::cli {

CLI::App* add_simulate_command(CLI::App& app, SimulateArgs& a) {
  auto* sim = app.add_subcommand("simulate", "make seeded synthetic test images with truth tables");
  sim->require_subcommand(1);

  FieldOptions& f = a.field;
  auto* fc = sim->add_subcommand("field", "one large field of galaxies and stars with a TAN WCS");
  fc->add_option("--seed", f.seed, "random seed")->capture_default_str();
  fc->add_option("--size", a.field_size, "W or WxH in pixels")->capture_default_str();
  fc->add_option("--output", f.output_dir, "output folder")->capture_default_str();
  fc->add_option("--name", f.name, "file stem of every output")->capture_default_str();
  fc->add_option("--pixel-scale", f.pixel_scale_arcsec, "arcsec/pixel")->capture_default_str();
  fc->add_option("--ra", f.ra_deg, "CRVAL1, degrees")->capture_default_str();
  fc->add_option("--dec", f.dec_deg, "CRVAL2, degrees")->capture_default_str();
  fc->add_option("--pa", f.position_angle_deg, "position angle, degrees")->capture_default_str();
  fc->add_option("--zp", f.zero_point_mag, "zero point (MAGZERO)")->capture_default_str();
  fc->add_option("--exptime", f.exptime_s, "EXPTIME, seconds")->capture_default_str();
  fc->add_option("--gain", f.gain_e_per_count, "electrons per count")->capture_default_str();
  fc->add_option("--sky", f.sky_counts, "mean sky per pixel, counts")->capture_default_str();
  fc->add_option("--sky-gradient", f.sky_gradient, "fractional sky change corner to corner")
      ->capture_default_str();
  fc->add_option("--read-noise", f.read_noise_e, "electrons")->capture_default_str();
  fc->add_option("--psf-fwhm", f.psf_fwhm_pix, "pixels (0: drawn)")->capture_default_str();
  fc->add_option("--psf-beta", f.psf_beta, "Moffat beta (0: drawn)")->capture_default_str();
  fc->add_option("--galaxy-density", f.galaxy_density_arcmin2, "galaxies per arcmin^2")
      ->capture_default_str();
  fc->add_option("--mag-bright", f.galaxy_mag_bright, "brightest galaxy")->capture_default_str();
  fc->add_option("--mag-faint", f.galaxy_mag_faint, "faintest galaxy")->capture_default_str();
  fc->add_option("--count-slope", f.count_slope, "dN/dm ~ 10^(slope m)")->capture_default_str();
  fc->add_option("--stars", f.n_stars, "number of stars")->capture_default_str();
  fc->add_option("--star-mag-bright", f.star_mag_bright, "brightest star")->capture_default_str();
  fc->add_option("--star-mag-faint", f.star_mag_faint, "faintest star")->capture_default_str();
  fc->add_option("--spike-mag", f.spike_mag, "stars brighter get diffraction spikes")
      ->capture_default_str();
  fc->add_option("--blend-fraction", f.blend_fraction, "galaxies given a close companion")
      ->capture_default_str();
  fc->add_option("--irregular-density", f.irregular_density_arcmin2,
                 "irregular galaxies (clumpy, mergers) per arcmin^2, mag <= 24.5")
      ->capture_default_str();
  fc->add_option("--cosmics", f.n_cosmic_rays, "cosmic-ray hits")->capture_default_str();
  fc->add_option("--hot-pixels", f.n_hot_pixels, "hot pixels")->capture_default_str();
  fc->add_option("--saturation", f.saturation_counts,
                 "full well in counts (0: none): clipped, excess bleeds along columns")
      ->capture_default_str();
  fc->add_option("--oversample", f.oversample, "galaxy rendering grid factor")
      ->capture_default_str();
  fc->add_option("--noise-seed", f.noise_seed, "seed of the pixel noise only (0: --seed)")
      ->capture_default_str();
  fc->add_option("--tiles", a.field_tiles,
                 "CxR: write C x R overlapping tiles <name>_r<row>c<col>.* of the field, sharing "
                 "its WCS frame and sky objects (a mini-survey), instead of the whole field");
  fc->add_option("--tile-overlap", a.field_tile_overlap, "pixels shared by neighbouring tiles")
      ->capture_default_str();
  a.field_cmd = fc;

  CutoutOptions& c = a.cutouts;
  auto* cc = sim->add_subcommand("cutouts", "N labelled stamps of five morphology classes");
  cc->add_option("--seed", c.seed, "random seed")->capture_default_str();
  cc->add_option("--n", c.n, "number of stamps")->capture_default_str();
  cc->add_option("--size", a.cutout_size, "W or WxH in pixels")->capture_default_str();
  cc->add_option("--output", c.output_dir, "output folder")->capture_default_str();
  cc->add_flag("--single-file", c.single_file, "one cube FITS instead of N files");
  cc->add_option("--cube-name", c.cube_name, "file name with --single-file")->capture_default_str();
  cc->add_option("--pixel-scale", c.pixel_scale_arcsec, "arcsec/pixel")->capture_default_str();
  cc->add_option("--ra", c.ra_deg, "degrees")->capture_default_str();
  cc->add_option("--dec", c.dec_deg, "degrees")->capture_default_str();
  cc->add_option("--zp", c.zero_point_mag, "zero point")->capture_default_str();
  cc->add_option("--exptime", c.exptime_s, "seconds")->capture_default_str();
  cc->add_option("--gain", c.gain_e_per_count, "electrons per count")->capture_default_str();
  cc->add_option("--sky", c.sky_counts, "mean sky per pixel")->capture_default_str();
  cc->add_option("--sky-jitter", c.sky_jitter, "relative sky jitter per stamp")
      ->capture_default_str();
  cc->add_option("--read-noise", c.read_noise_e, "electrons")->capture_default_str();
  cc->add_option("--psf-fwhm-min", c.psf_fwhm_min_pix, "pixels")->capture_default_str();
  cc->add_option("--psf-fwhm-max", c.psf_fwhm_max_pix, "pixels")->capture_default_str();
  cc->add_option("--psf-beta-min", c.psf_beta_min, "Moffat beta")->capture_default_str();
  cc->add_option("--psf-beta-max", c.psf_beta_max, "Moffat beta")->capture_default_str();
  cc->add_option("--r-eff-min", c.r_eff_min_pix, "pixels")->capture_default_str();
  cc->add_option("--r-eff-max", c.r_eff_max_pix, "pixels")->capture_default_str();
  cc->add_option("--snr-min", c.snr_min, "integrated S/N")->capture_default_str();
  cc->add_option("--snr-max", c.snr_max, "integrated S/N")->capture_default_str();
  cc->add_option("--neighbour-fraction", c.neighbour_fraction, "stamps with neighbours")
      ->capture_default_str();
  cc->add_option("--stray-artifacts", c.stray_artifact_fraction,
                 "share of stamps with 1-3 cosmic rays or hot pixels off their centre")
      ->capture_default_str();
  cc->add_option("--jitter", c.centre_jitter_pix, "centre offset, pixels")->capture_default_str();
  cc->add_option("--oversample", c.oversample, "galaxy grid factor")->capture_default_str();
  cc->add_option("--disk-sersic-min", c.shapes.disk_sersic_min, "disk Sersic n, uniform from")
      ->capture_default_str();
  cc->add_option("--disk-sersic-max", c.shapes.disk_sersic_max,
                 "disk Sersic n, uniform to (<= 2.5)")
      ->capture_default_str();
  cc->add_option("--spheroid-axis-ratio-min", c.shapes.spheroid_axis_ratio_min,
                 "spheroid b/a, uniform from this to 1")
      ->capture_default_str();
  a.cutouts_cmd = cc;
  return sim;
}

int run_simulate(SimulateArgs& a) {
  if (a.field_cmd->parsed()) {
    std::tie(a.field.width_pix, a.field.height_pix) = parse_image_size(a.field_size, "--size");
    const FieldSimulation field = simulate_field(a.field);
    if (!a.field_tiles.empty()) {
      const SurveyTiling tiling = parse_survey_tiling(a.field_tiles, a.field_tile_overlap);
      for (const std::string& p : write_survey(field, a.field, tiling)) std::cout << p << "\n";
      return 0;
    }
    for (const std::string& p : write_field(field, a.field)) std::cout << p << "\n";
    return 0;
  }
  std::tie(a.cutouts.width_pix, a.cutouts.height_pix) = parse_image_size(a.cutout_size, "--size");
  const CutoutRunResult r = write_cutouts(a.cutouts);
  std::cout << r.labels.size() << " stamps written to " << a.cutouts.output_dir << "\n";
  return 0;
}

}  // namespace astroflow::cli
