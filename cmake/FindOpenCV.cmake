# FindOpenCV.cmake: OpenCV from Debian's split -dev packages.
#
# Debian 12's libopencv-{core,imgproc,imgcodecs,dnn}-dev ship headers and libraries but no
# OpenCVConfig.cmake (only the 580 MB libopencv-dev meta package does). This module uses an
# OpenCVConfig.cmake when one exists and otherwise finds the modules asked for in COMPONENTS,
# creating imported targets opencv_<module> as OpenCV's own config does.
find_package(OpenCV CONFIG QUIET COMPONENTS ${OpenCV_FIND_COMPONENTS})
if(OpenCV_FOUND)
  return()
endif()

find_path(OpenCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
set(OpenCV_INCLUDE_DIRS ${OpenCV_INCLUDE_DIR})
set(OpenCV_LIBS)
set(_opencv_missing)
set(_opencv_components ${OpenCV_FIND_COMPONENTS})
if(NOT _opencv_components)
  set(_opencv_components core)
endif()
foreach(_m IN LISTS _opencv_components)
  find_library(OpenCV_${_m}_LIBRARY opencv_${_m})
  if(OpenCV_${_m}_LIBRARY AND OpenCV_INCLUDE_DIR)
    set(OpenCV_${_m}_FOUND TRUE)
    if(NOT TARGET opencv_${_m})
      add_library(opencv_${_m} SHARED IMPORTED)
      set_target_properties(opencv_${_m} PROPERTIES
        IMPORTED_LOCATION "${OpenCV_${_m}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIR}")
    endif()
    list(APPEND OpenCV_LIBS opencv_${_m})
  else()
    list(APPEND _opencv_missing libopencv-${_m}-dev)
  endif()
endforeach()

if(OpenCV_INCLUDE_DIR AND EXISTS "${OpenCV_INCLUDE_DIR}/opencv2/core/version.hpp")
  file(STRINGS "${OpenCV_INCLUDE_DIR}/opencv2/core/version.hpp" _v REGEX "^#define CV_VERSION_(MAJOR|MINOR|REVISION) ")
  string(REGEX REPLACE ".*MAJOR +([0-9]+).*MINOR +([0-9]+).*REVISION +([0-9]+).*" "\\1.\\2.\\3" OpenCV_VERSION "${_v}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenCV
  REQUIRED_VARS OpenCV_INCLUDE_DIR OpenCV_LIBS
  VERSION_VAR OpenCV_VERSION
  HANDLE_COMPONENTS
  REASON_FAILURE_MESSAGE "install ${_opencv_missing} (scripts/install-deps.sh)")
