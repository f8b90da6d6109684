# Finds ONNX Runtime's C/C++ headers and library; defines OnnxRuntime::onnxruntime.
#
# Hints: OnnxRuntime_ROOT (include/ and lib/ below it), or OnnxRuntime_INCLUDE_DIR and OnnxRuntime_LIBRARY.
# OnnxRuntime_LIBRARY may be a versioned file without its SONAME link (the Python wheel ships only
# libonnxruntime.so.1.x.y): links named libonnxruntime.so.1 / libonnxruntime.so (and the provider
# libraries beside it) are then made in the build tree, so linking and the run-time search both work.
find_path(OnnxRuntime_INCLUDE_DIR onnxruntime_cxx_api.h
          HINTS "${OnnxRuntime_ROOT}/include" "${OnnxRuntime_ROOT}/include/onnxruntime" ENV OnnxRuntime_ROOT)
find_library(OnnxRuntime_LIBRARY NAMES onnxruntime libonnxruntime.so.1 HINTS "${OnnxRuntime_ROOT}/lib" ENV OnnxRuntime_ROOT)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OnnxRuntime REQUIRED_VARS OnnxRuntime_LIBRARY OnnxRuntime_INCLUDE_DIR)

if(OnnxRuntime_FOUND AND NOT TARGET OnnxRuntime::onnxruntime)
  set(_ort_location "${OnnxRuntime_LIBRARY}")
  get_filename_component(_ort_name "${OnnxRuntime_LIBRARY}" NAME)
  if(UNIX AND NOT APPLE AND _ort_name MATCHES "^libonnxruntime\\.so\\.[0-9]+\\.[0-9]+")
    set(_ort_links "${CMAKE_BINARY_DIR}/onnxruntime-lib")
    get_filename_component(_ort_dir "${OnnxRuntime_LIBRARY}" DIRECTORY)
    file(MAKE_DIRECTORY "${_ort_links}")
    file(CREATE_LINK "${OnnxRuntime_LIBRARY}" "${_ort_links}/libonnxruntime.so.1" SYMBOLIC)
    file(CREATE_LINK "${OnnxRuntime_LIBRARY}" "${_ort_links}/libonnxruntime.so" SYMBOLIC)
    file(GLOB _ort_providers "${_ort_dir}/libonnxruntime_providers_*.so")
    foreach(_provider IN LISTS _ort_providers)
      get_filename_component(_provider_name "${_provider}" NAME)
      file(CREATE_LINK "${_provider}" "${_ort_links}/${_provider_name}" SYMBOLIC)
    endforeach()
    set(_ort_location "${_ort_links}/libonnxruntime.so.1")
  endif()
  add_library(OnnxRuntime::onnxruntime SHARED IMPORTED)
  set_target_properties(OnnxRuntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${_ort_location}"
    INTERFACE_INCLUDE_DIRECTORIES "${OnnxRuntime_INCLUDE_DIR}")
endif()
mark_as_advanced(OnnxRuntime_INCLUDE_DIR OnnxRuntime_LIBRARY)
