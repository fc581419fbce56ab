// The plugin boundary: one extern "C" entry symbol per shared library.
//
//   #include <astroflow/plugin.hpp>
//   class MyStage : public astroflow::Stage { ... };
//   ASTROFLOW_PLUGIN(MyStage, "mystage", "1.0.0", "MIT", "what it does",
//                    /*needs=*/"", /*provides=*/"column:MY_COL",
//                    astroflow::OptionSchema().add_double("k", 1.0, "a factor"))
//
// ABI policy: kAbiMajor changes break (the host refuses a plugin of another major); kAbiMinor
// changes only add fields at the end of PluginDescriptor (the host loads a plugin built with an
// older minor, and refuses a newer one). The toolchain tag must match exactly, because Stage,
// Frame and Catalog are C++ types whose layout depends on the compiler and standard library.
//
// Every call through the descriptor is noexcept: the macro's trampolines catch every exception
// and report it through the error buffer, so no exception crosses the boundary.
//
// needs/provides are comma-separated tokens, e.g. "plane:background,column:X_IMAGE". The config
// validator checks that every need of a stage is provided by an earlier stage (or by the reader:
// "plane:science", "header", "wcs"). "a|b" is met by either; since ABI 1.1 a need may end in a
// condition on the stage's options, "plane:segmap?mask_neighbours" (a bool option is true) or
// "column:X_IMAGE?mode=sources" (an option has that value); the host refuses a plugin whose
// condition names an option its schema lacks.
//
// ABI minors: 1.0 the descriptor below; 1.1 conditional needs (no field added, but a 1.0 host
// would read such a need as one no stage provides, so it refuses 1.1 plugins instead).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>

#include "astroflow/options.hpp"
#include "astroflow/stage.hpp"

#define ASTROFLOW_ABI_MAJOR 1
#define ASTROFLOW_ABI_MINOR 1

#define ASTROFLOW_STR2(x) #x
#define ASTROFLOW_STR(x) ASTROFLOW_STR2(x)
/// Compiler + standard library + language level the plugin was built with.
#define ASTROFLOW_TOOLCHAIN_TAG                                                  \
  "gcc-" ASTROFLOW_STR(__GNUC__) "/libstdc++-" ASTROFLOW_STR(_GLIBCXX_RELEASE) \
  "/cxx-" ASTROFLOW_STR(__cplusplus)

#define ASTROFLOW_ENTRY_SYMBOL "astroflow_plugin_entry"

extern "C" {

/// Error reporting for trampolines: returns 0 on success, non-zero with `err` filled otherwise.
typedef int (*astroflow_status_fn)(void* instance, char* err, std::size_t err_len);

struct AstroflowPluginDescriptor {
  // --- fields that every ABI major keeps at these offsets ---
  std::uint32_t abi_major;
  std::uint32_t abi_minor;
  const char* toolchain;
  // --- ABI 1.0 ---
  const char* name;
  const char* version;
  const char* license;
  const char* summary;
  const char* needs;
  const char* provides;
  const astroflow::OptionSchema* (*schema)();
  void* (*create)(char* err, std::size_t err_len);
  void (*destroy)(void* instance);
  int (*configure)(void* instance, const astroflow::Options* options, char* err,
                   std::size_t err_len);
  int (*open)(void* instance, const astroflow::StageContext* ctx, char* err, std::size_t err_len);
  int (*process)(void* instance, astroflow::Batch* batch, char* err, std::size_t err_len);
  int (*close)(void* instance, char* err, std::size_t err_len);
};

typedef const AstroflowPluginDescriptor* (*astroflow_plugin_entry_fn)();
}

namespace astroflow::detail {

inline void write_error(char* err, std::size_t len, const char* msg) noexcept {
  if (err != nullptr && len > 0) std::snprintf(err, len, "%s", msg);
}

template <typename F>
int guarded(char* err, std::size_t len, F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const FatalError& e) {
    write_error(err, len, e.what());
    return 2;
  } catch (const std::exception& e) {
    write_error(err, len, e.what());
    return 1;
  } catch (...) {
    write_error(err, len, "unknown exception");
    return 1;
  }
}

}  // namespace astroflow::detail

#define ASTROFLOW_PLUGIN(StageClass, NAME, VERSION, LICENSE, SUMMARY, NEEDS, PROVIDES, SCHEMA) \
  extern "C" __attribute__((visibility("default"))) const AstroflowPluginDescriptor*          \
  astroflow_plugin_entry() {                                                                   \
    static const AstroflowPluginDescriptor d = {                                               \
        ASTROFLOW_ABI_MAJOR,                                                                   \
        ASTROFLOW_ABI_MINOR,                                                                   \
        ASTROFLOW_TOOLCHAIN_TAG,                                                               \
        NAME,                                                                                  \
        VERSION,                                                                               \
        LICENSE,                                                                               \
        SUMMARY,                                                                               \
        NEEDS,                                                                                 \
        PROVIDES,                                                                              \
        []() -> const ::astroflow::OptionSchema* {                                             \
          static const ::astroflow::OptionSchema s = (SCHEMA);                                 \
          return &s;                                                                           \
        },                                                                                     \
        [](char* err, std::size_t len) noexcept -> void* {                                     \
          void* out = nullptr;                                                                 \
          ::astroflow::detail::guarded(err, len, [&] {                                         \
            auto* s = new StageClass();                                                        \
            ::astroflow::StageAccess::set_identity(*s, NAME, VERSION);                         \
            out = static_cast<::astroflow::Stage*>(s);                                         \
          });                                                                                  \
          return out;                                                                          \
        },                                                                                     \
        [](void* p) noexcept { delete static_cast<::astroflow::Stage*>(p); },                  \
        [](void* p, const ::astroflow::Options* o, char* err, std::size_t len) noexcept {      \
          return ::astroflow::detail::guarded(                                                 \
              err, len, [&] { static_cast<::astroflow::Stage*>(p)->configure(*o); });          \
        },                                                                                     \
        [](void* p, const ::astroflow::StageContext* c, char* err, std::size_t len) noexcept { \
          return ::astroflow::detail::guarded(                                                 \
              err, len, [&] { static_cast<::astroflow::Stage*>(p)->open(*c); });               \
        },                                                                                     \
        [](void* p, ::astroflow::Batch* b, char* err, std::size_t len) noexcept {              \
          return ::astroflow::detail::guarded(                                                 \
              err, len, [&] { static_cast<::astroflow::Stage*>(p)->process(*b); });            \
        },                                                                                     \
        [](void* p, char* err, std::size_t len) noexcept {                                     \
          return ::astroflow::detail::guarded(                                                 \
              err, len, [&] { static_cast<::astroflow::Stage*>(p)->close(); });                \
        },                                                                                     \
    };                                                                                         \
    return &d;                                                                                 \
  }
