// Generated from s4s_export/contract.py by scripts/write_contract_header.py: do not edit.
// tests/runtime/test_contract_header.py checks that it is current and that runtime/cpp uses it.
#pragma once

namespace s4s::contract {

inline constexpr char kNoise[] = "noise";
inline constexpr char kClassLabels[] = "class_labels";
inline constexpr char kGuidanceScale[] = "guidance_scale";
inline constexpr char kImages[] = "images";
inline constexpr char kNoiseDtype[] = "float32";
inline constexpr char kClassLabelsDtype[] = "int64";
inline constexpr char kGuidanceScaleDtype[] = "float32";
inline constexpr char kImagesFloatDtype[] = "float32";
inline constexpr char kImagesUint8Dtype[] = "uint8";
inline constexpr char kNumClassesKey[] = "num_classes";
inline constexpr char kModelKey[] = "model";
inline constexpr char kGuidanceKey[] = "guidance_scale";
inline constexpr char kSidecarSuffix[] = ".json";
inline constexpr float kDefaultGuidance = 1.0f;

}  // namespace s4s::contract
