// A plugin whose descriptor is written by hand so that one field carries a defect that the
// ASTROFLOW_PLUGIN macro cannot express. The defect comes from compile definitions:
//   TP_ABI_MAJOR, TP_ABI_MINOR  ABI version the descriptor claims
//   TP_TOOLCHAIN                toolchain tag the descriptor claims
//   TP_NAME                     plugin name (may be empty or invalid)
//   TP_ENTRY_NULL               the entry symbol returns a null descriptor
//   TP_NEEDS                    the needs string (e.g. a condition on an option the schema lacks)
// Everything else is the good ScaleStage, so the defect is the only reason for a refusal.
#include "test_stage.hpp"

#ifndef TP_ABI_MAJOR
#define TP_ABI_MAJOR ASTROFLOW_ABI_MAJOR
#endif
#ifndef TP_ABI_MINOR
#define TP_ABI_MINOR ASTROFLOW_ABI_MINOR
#endif
#ifndef TP_TOOLCHAIN
#define TP_TOOLCHAIN ASTROFLOW_TOOLCHAIN_TAG
#endif
#ifndef TP_NAME
#define TP_NAME "handmade"
#endif

// The macro's trampolines are reused under another symbol name; the exported entry below is
// the hand-written one.
#define astroflow_plugin_entry tp_macro_entry
ASTROFLOW_TEST_SCALE_PLUGIN(astroflow_test::ScaleStage, "handmade", astroflow_test::scale_schema())
#undef astroflow_plugin_entry

extern "C" __attribute__((visibility("default"))) const AstroflowPluginDescriptor*
astroflow_plugin_entry() {
#ifdef TP_ENTRY_NULL
  return nullptr;
#else
  static const AstroflowPluginDescriptor d = [] {
    AstroflowPluginDescriptor out = *tp_macro_entry();
    out.abi_major = TP_ABI_MAJOR;
    out.abi_minor = TP_ABI_MINOR;
    out.toolchain = TP_TOOLCHAIN;
    out.name = TP_NAME;
#ifdef TP_NEEDS
    out.needs = TP_NEEDS;
#endif
    return out;
  }();
  return &d;
#endif
}
