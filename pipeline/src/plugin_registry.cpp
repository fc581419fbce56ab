#include "astroflow/plugin_registry.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#ifndef ASTROFLOW_PLUGIN_RELDIR
#define ASTROFLOW_PLUGIN_RELDIR "lib/astroflow/plugins"
#endif

namespace astroflow {
namespace {

namespace fs = std::filesystem;

// Room for a trampoline's message: what() of an exception, usually one line.
constexpr std::size_t kErrorBufferSize = 4096;
using ErrorBuffer = std::array<char, kErrorBufferSize>;

// Owns a dlopen handle until the plugin passes every check; released into LoadedPlugin after.
struct DlCloser {
  void operator()(void* handle) const noexcept {
    if (handle != nullptr) dlclose(handle);
  }
};
using DlHandle = std::unique_ptr<void, DlCloser>;

std::string last_dlerror() {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string("unknown dynamic loader error");
}

std::string message_of(const ErrorBuffer& err) {
  std::string msg(err.data());
  return msg.empty() ? std::string("failed without a message") : msg;
}

std::string abi_text(std::uint32_t major, std::uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// Names appear in YAML ("plugin: name"), in file names and in log prefixes, so keep them to a
// portable, quote-free alphabet.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!letter(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return letter(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

std::vector<std::string> split_tokens(const char* text, char sep) {
  std::vector<std::string> out;
  if (text == nullptr) return out;
  std::string_view s(text);
  while (!s.empty()) {
    const std::size_t pos = s.find(sep);
    std::string_view tok = s.substr(0, pos);
    const auto first = tok.find_first_not_of(" \t");
    if (first != std::string_view::npos) {
      const auto last = tok.find_last_not_of(" \t");
      out.emplace_back(tok.substr(first, last - first + 1));
    }
    if (pos == std::string_view::npos) break;
    s.remove_prefix(pos + 1);
  }
  return out;
}

std::string canonical_or_given(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

std::string stage_prefix(const std::string& stage, const std::string& plugin_path) {
  return "stage '" + stage + "' (" + plugin_path + "): ";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// StageInstance

StageInstance::StageInstance(const AstroflowPluginDescriptor* d, void* instance,
                             std::string stage_name, std::string plugin_path)
    : d_(d),
      instance_(instance),
      stage_name_(std::move(stage_name)),
      plugin_path_(std::move(plugin_path)) {}

StageInstance::~StageInstance() {
  if (instance_ == nullptr) return;
  if (opened_ && !closed_) {
    // A destructor cannot report; the run that dropped this instance has already failed.
    ErrorBuffer err{};
    (void)d_->close(instance_, err.data(), err.size());
  }
  d_->destroy(instance_);
}

void StageInstance::configure(const Options& options) {
  ErrorBuffer err{};
  if (d_->configure(instance_, &options, err.data(), err.size()) != 0) {
    throw FatalError(stage_prefix(stage_name_, plugin_path_) + "configure: " + message_of(err));
  }
}

void StageInstance::open(const StageContext& context) {
  ErrorBuffer err{};
  if (d_->open(instance_, &context, err.data(), err.size()) != 0) {
    throw FatalError(stage_prefix(stage_name_, plugin_path_) + "open: " + message_of(err));
  }
  opened_ = true;
  closed_ = false;
}

void StageInstance::process(Batch& batch) {
  ErrorBuffer err{};
  if (d_->process(instance_, &batch, err.data(), err.size()) != 0) {
    throw FrameError(stage_prefix(stage_name_, plugin_path_) + "process: " + message_of(err));
  }
}

void StageInstance::close() {
  if (closed_) return;
  closed_ = true;
  ErrorBuffer err{};
  if (d_->close(instance_, err.data(), err.size()) != 0) {
    throw FatalError(stage_prefix(stage_name_, plugin_path_) + "close: " + message_of(err));
  }
}

// ---------------------------------------------------------------------------------------------
// Need

namespace {

// An option's value as a condition compares it: strings unquoted, the rest as to_string.
std::string condition_value(const OptionValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return to_string(v);
}

}  // namespace

bool Need::applies(const Options& options) const {
  if (option.empty()) return true;
  const auto it = options.values().find(option);
  if (it == options.values().end()) return false;
  if (!value) return std::holds_alternative<bool>(it->second) && std::get<bool>(it->second);
  return condition_value(it->second) == *value;
}

std::string Need::token() const {
  std::string out;
  for (const std::string& a : alternatives) out += (out.empty() ? "" : "|") + a;
  return out;
}

std::string Need::condition_text() const {
  if (option.empty()) return {};
  return option + (value ? " is " + *value : std::string(" is true"));
}

std::vector<Need> parse_needs(std::string_view text) {
  std::vector<Need> out;
  const std::string copy(text);
  for (std::string& token : split_tokens(copy.c_str(), ',')) {
    Need n;
    n.text = token;
    std::string body = token;
    if (const auto q = token.find('?'); q != std::string::npos) {
      body = token.substr(0, q);
      std::string cond = token.substr(q + 1);
      if (const auto eq = cond.find('='); eq != std::string::npos) {
        n.value = cond.substr(eq + 1);
        cond.resize(eq);
      }
      n.option = cond;
      if (n.option.empty() || (n.value && n.value->empty())) {
        throw std::invalid_argument("need '" + token +
                                    "' has an empty condition (write TOKEN?OPTION or "
                                    "TOKEN?OPTION=VALUE)");
      }
    }
    n.alternatives = split_tokens(body.c_str(), '|');
    if (n.alternatives.empty()) throw std::invalid_argument("need '" + token + "' names nothing");
    out.push_back(std::move(n));
  }
  return out;
}

std::string check_needs(const std::vector<Need>& needs, const OptionSchema& schema) {
  for (const Need& n : needs) {
    if (n.option.empty()) continue;
    const OptionSpec* spec = schema.find(n.option);
    if (spec == nullptr) {
      return "need '" + n.text + "' depends on the option '" + n.option +
             "', which the plugin's schema lacks";
    }
    if (!n.value && spec->type != OptionType::kBool) {
      return "need '" + n.text + "' depends on '" + n.option + "' being true, but '" + n.option +
             "' is a " + std::string(to_string(spec->type)) + " option (write ?" + n.option +
             "=VALUE)";
    }
    if (n.value && !spec->choices.empty() &&
        std::find(spec->choices.begin(), spec->choices.end(), *n.value) == spec->choices.end()) {
      return "need '" + n.text + "' compares '" + n.option + "' with '" + *n.value +
             "', which is not one of its choices";
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// LoadedPlugin

LoadedPlugin::LoadedPlugin(std::string path, void* handle, const AstroflowPluginDescriptor* d)
    : path_(std::move(path)), handle_(handle), d_(d) {}

LoadedPlugin::~LoadedPlugin() {
  DlCloser{}(handle_);
}

std::vector<std::string> LoadedPlugin::needs() const {
  return split_tokens(d_->needs, ',');
}

std::vector<Need> LoadedPlugin::need_list() const {
  return parse_needs(d_->needs != nullptr ? d_->needs : "");
}

std::vector<Need> LoadedPlugin::needs_for(const Options& options) const {
  std::vector<Need> out;
  for (Need& n : need_list()) {
    if (n.applies(options)) out.push_back(std::move(n));
  }
  return out;
}

std::vector<std::string> LoadedPlugin::provides() const {
  return split_tokens(d_->provides, ',');
}

std::unique_ptr<StageInstance> LoadedPlugin::create(const std::string& stage_name) const {
  ErrorBuffer err{};
  void* instance = d_->create(err.data(), err.size());
  if (instance == nullptr) {
    throw FatalError(stage_prefix(stage_name, path_) + "create: " + message_of(err));
  }
  return std::make_unique<StageInstance>(d_, instance, stage_name, path_);
}

// ---------------------------------------------------------------------------------------------
// PluginRegistry

const LoadedPlugin& PluginRegistry::load_file(const std::string& path) {
  const std::string canonical = canonical_or_given(path);
  for (const auto& p : plugins_) {
    if (canonical_or_given(p->path()) == canonical) return *p;
  }

  // Without a slash dlopen would search LD_LIBRARY_PATH instead of the file named.
  const std::string dl_path = path.find('/') == std::string::npos ? "./" + path : path;
  dlerror();
  DlHandle handle(dlopen(dl_path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!handle) {
    throw PluginLoadError(path + ": not a loadable shared object: " + last_dlerror());
  }

  dlerror();
  void* sym = dlsym(handle.get(), ASTROFLOW_ENTRY_SYMBOL);
  if (sym == nullptr) {
    throw PluginLoadError(path +
                          ": missing entry symbol '" ASTROFLOW_ENTRY_SYMBOL
                          "' (is ASTROFLOW_PLUGIN(...) in one source file?): " +
                          last_dlerror());
  }
  // POSIX guarantees that a dlsym result converts to a function pointer.
  auto entry = reinterpret_cast<astroflow_plugin_entry_fn>(sym);
  const AstroflowPluginDescriptor* d = entry();
  if (d == nullptr) {
    throw PluginLoadError(path + ": entry symbol '" ASTROFLOW_ENTRY_SYMBOL
                                 "' returned no descriptor (null)");
  }

  const std::string versions = "plugin astroflow ABI " + abi_text(d->abi_major, d->abi_minor) +
                               ", host " + abi_text(host_abi_major_, host_abi_minor_);
  if (d->abi_major != host_abi_major_) {
    throw PluginLoadError(path + ": ABI major " + std::to_string(d->abi_major) +
                          " differs from the host's " + std::to_string(host_abi_major_) + " (" +
                          versions + "); rebuild the plugin against this astroflow");
  }
  if (d->abi_minor > host_abi_minor_) {
    throw PluginLoadError(path + ": ABI minor is newer than the host's: plugin built for " +
                          "astroflow ABI " + abi_text(d->abi_major, d->abi_minor) +
                          ", host supports up to " + abi_text(host_abi_major_, host_abi_minor_));
  }
  const std::string host_toolchain = ASTROFLOW_TOOLCHAIN_TAG;
  if (d->toolchain == nullptr || host_toolchain != d->toolchain) {
    throw PluginLoadError(path + ": toolchain tag '" +
                          std::string(d->toolchain != nullptr ? d->toolchain : "(null)") +
                          "' differs from the host's '" + host_toolchain +
                          "'; rebuild the plugin with the host's compiler and standard library");
  }

  // Only ABI 1.0 fields are read, so these checks hold for every minor of major 1.
  const std::pair<const char*, bool> required[] = {
      {"name", d->name != nullptr},       {"version", d->version != nullptr},
      {"license", d->license != nullptr}, {"summary", d->summary != nullptr},
      {"needs", d->needs != nullptr},     {"provides", d->provides != nullptr},
      {"schema", d->schema != nullptr},   {"create", d->create != nullptr},
      {"destroy", d->destroy != nullptr}, {"configure", d->configure != nullptr},
      {"open", d->open != nullptr},       {"process", d->process != nullptr},
      {"close", d->close != nullptr},
  };
  for (const auto& [field, present] : required) {
    if (!present) throw PluginLoadError(path + ": descriptor field '" + field + "' is null");
  }
  if (d->name[0] == '\0') throw PluginLoadError(path + ": descriptor field 'name' is empty");
  if (!valid_name(d->name)) {
    throw PluginLoadError(path + ": invalid name '" + d->name +
                          "' (use up to 64 letters, digits, '_', '-' or '.', starting with a "
                          "letter)");
  }
  // Conditional needs (ABI 1.1) must name options of the schema; a plugin without any keeps
  // its schema unread until it is used, as before.
  std::string problem;
  try {
    const std::vector<Need> needs = parse_needs(d->needs);
    if (std::any_of(needs.begin(), needs.end(), [](const Need& n) { return !n.option.empty(); })) {
      problem = check_needs(needs, *d->schema());
    }
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!problem.empty()) throw PluginLoadError(path + ": " + problem);
  if (const LoadedPlugin* other = find(d->name)) {
    throw PluginLoadError(path + ": duplicate plugin name '" + d->name + "', already loaded from " +
                          other->path());
  }

  plugins_.push_back(std::unique_ptr<LoadedPlugin>(new LoadedPlugin(path, handle.get(), d)));
  (void)handle.release();
  return *plugins_.back();
}

void PluginRegistry::scan(const std::vector<std::string>& directories) {
  for (const std::string& dir : directories) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string file = entry.path().filename().string();
      if (file.size() > 6 && file.starts_with("lib") && file.ends_with(".so") &&
          entry.is_regular_file(ec)) {
        files.push_back(entry.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
      try {
        (void)load_file(file);
      } catch (const PluginLoadError& e) {
        refusals_.emplace_back(e.what());
      }
    }
  }
}

const LoadedPlugin* PluginRegistry::find(const std::string& name) const {
  for (const auto& p : plugins_) {
    if (p->name() == name) return p.get();
  }
  return nullptr;
}

std::vector<const LoadedPlugin*> PluginRegistry::plugins() const {
  std::vector<const LoadedPlugin*> out;
  out.reserve(plugins_.size());
  for (const auto& p : plugins_) out.push_back(p.get());
  return out;
}

std::vector<std::string> PluginRegistry::search_path(const std::vector<std::string>& config_paths) {
  std::vector<std::string> out = config_paths;
  if (const char* env = std::getenv("ASTROFLOW_PLUGIN_PATH")) {
    for (std::string& entry : split_tokens(env, ':')) out.push_back(std::move(entry));
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && exe.has_parent_path()) {
    const fs::path prefix = exe.parent_path().parent_path();
    out.push_back((prefix / ASTROFLOW_PLUGIN_RELDIR).string());
    // The build tree always uses lib/, while a multiarch install may use lib/<triplet>.
    const std::string build_tree = (prefix / "lib/astroflow/plugins").string();
    if (build_tree != out.back()) out.push_back(build_tree);
  }
  return out;
}

}  // namespace astroflow
