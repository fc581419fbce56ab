# astroflow_add_plugin(NAME SOURCES ... [LIBS ...])
# A plugin is a MODULE library with hidden visibility that links the SDK; only the entry
# symbol (ASTROFLOW_PLUGIN) is exported. Used in tree and, installed, by out-of-tree plugins.
#
# Out of tree (after find_package(astroflow)), the plugin installs into
# <CMAKE_INSTALL_PREFIX of the plugin project>/lib/astroflow/plugins unless the project sets
# ASTROFLOW_PLUGIN_INSTALL_DIR first. The host finds it there when that prefix is astroflow's own
# prefix; otherwise name the folder in the config's plugin_paths or in ASTROFLOW_PLUGIN_PATH.
include(GNUInstallDirs)
if(NOT DEFINED ASTROFLOW_PLUGIN_INSTALL_DIR)
  set(ASTROFLOW_PLUGIN_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/astroflow/plugins)
endif()
function(astroflow_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  set(target astroflow_plugin_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME "astroflow-${name}"
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(DEFINED ASTROFLOW_PLUGIN_BUILD_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ASTROFLOW_PLUGIN_BUILD_DIR})
  endif()
  target_compile_features(${target} PRIVATE cxx_std_20)
  if(DEFINED ASTROFLOW_WARNINGS)
    target_compile_options(${target} PRIVATE ${ASTROFLOW_WARNINGS})
  endif()
  target_link_libraries(${target} PRIVATE astroflow::sdk ${ARG_LIBS})
  # Lets the in-tree test suite depend on every built-in plugin.
  set_property(GLOBAL APPEND PROPERTY ASTROFLOW_PLUGIN_TARGETS ${target})
  if(DEFINED ASTROFLOW_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${ASTROFLOW_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
