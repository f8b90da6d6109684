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
inline constexpr char kPromptEmbeds[] = "prompt_embeds";
inline constexpr char kNegativePromptEmbeds[] = "negative_prompt_embeds";
inline constexpr char kPooledEmbeds[] = "pooled_prompt_embeds";
inline constexpr char kNegativePooledEmbeds[] = "negative_pooled_prompt_embeds";
inline constexpr char kTimeIds[] = "add_time_ids";
inline constexpr char kLatents[] = "latents";
inline constexpr char kEmbedsDtype[] = "float32";
inline constexpr char kInputIds[] = "input_ids";
inline constexpr char kInputIdsDtype[] = "int64";
inline constexpr char kTextEncoderKey[] = "text_encoder";
inline constexpr char kTextEncoderFileKey[] = "onnx";
inline constexpr char kTextLengthKey[] = "length";
inline constexpr char kTextDimKey[] = "dim";
inline constexpr char kTextTokenizersKey[] = "tokenizers";
inline constexpr float kDefaultGuidance = 1.0f;
// text inputs of text-conditioned graphs, in graph order
inline constexpr const char* kTextInputs[] = {"prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds", "add_time_ids"};

}  // namespace s4s::contract
