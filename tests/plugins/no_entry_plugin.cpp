// A shared object that loads but exports no astroflow_plugin_entry (e.g. a helper library
// dropped into a plugin folder).
extern "C" __attribute__((visibility("default"))) int tp_not_a_plugin() {
  return 42;
}
