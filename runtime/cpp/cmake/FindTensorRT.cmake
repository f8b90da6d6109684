# Finds TensorRT (NvInfer.h, libnvinfer) and the CUDA runtime; defines TensorRT::nvinfer and TensorRT_VERSION.
# Hint: TensorRT_ROOT (the TensorRT tar/zip install: include/ and lib/). TensorRT ships no CMake package.
find_path(TensorRT_INCLUDE_DIR NvInfer.h HINTS "${TensorRT_ROOT}/include" ENV TensorRT_ROOT PATH_SUFFIXES include)
find_library(TensorRT_LIBRARY nvinfer HINTS "${TensorRT_ROOT}/lib" ENV TensorRT_ROOT PATH_SUFFIXES lib lib64)
find_package(CUDAToolkit QUIET)

if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  file(READ "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_header)
  # 11.x defines NV_TENSORRT_MAJOR as TRT_MAJOR_ENTERPRISE; 10.x gives the number directly.
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "#define TRT_${_part}_ENTERPRISE +([0-9]+)" _match "${_trt_header}")
    if(NOT _match)
      string(REGEX MATCH "#define NV_TENSORRT_${_part} +([0-9]+)" _match "${_trt_header}")
    endif()
    set(_trt_${_part} "${CMAKE_MATCH_1}")
  endforeach()
  set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT REQUIRED_VARS TensorRT_LIBRARY TensorRT_INCLUDE_DIR CUDAToolkit_FOUND
                                  VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
  add_library(TensorRT::nvinfer SHARED IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TensorRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
