// qls::gpu_trainer and make_cuda_train_backend in a build without the CUDA backend: every entry point says so (the
// CPU backend trains instead).
#ifndef QLS_HAVE_CUDA
#include "qls/generate.h"
#include "qls/gpu_train.h"
#include "qls/train_backend.h"

#include "qls/error.h"

namespace qls {

namespace {
[[noreturn]] void no_cuda() {
    throw error(error_code::device, "this build has no CUDA backend",
                "install the CUDA toolkit (nvcc) and rebuild (QLS_WITH_CUDA=AUTO turns it on), or train on the CPU");
}
} // namespace

struct gpu_trainer::impl {};
gpu_trainer::gpu_trainer() = default;
gpu_trainer::~gpu_trainer() = default;
std::unique_ptr<gpu_trainer> gpu_trainer::synthetic(const model_config&, const memory_plan&, const gpu_train_options&,
                                                    uint64_t) {
    no_cuda();
}
std::unique_ptr<gpu_trainer> gpu_trainer::from_model(const llama_model&, const lora_weights<float>&, const memory_plan&,
                                                     const gpu_train_options&) {
    no_cuda();
}
std::unique_ptr<gpu_trainer> gpu_trainer::for_streaming(const model_config&, const lora_config&, const memory_plan&,
                                                        const gpu_train_options&) {
    no_cuda();
}
weight_sink& gpu_trainer::load_sink() { no_cuda(); }
void gpu_trainer::finish_load(const lora_weights<float>&) { no_cuda(); }
double gpu_trainer::forward_backward(const gpu_batch&, bool, uint64_t) { no_cuda(); }
double gpu_trainer::forward_loss(const gpu_batch&) { no_cuda(); }
gpu_update_result gpu_trainer::optimizer_step(float, int, float) { no_cuda(); }
void gpu_trainer::zero_grad() { no_cuda(); }
lora_weights<float> gpu_trainer::download_lora() const { no_cuda(); }
void gpu_trainer::download_lora_into(lora_weights<float>&) const { no_cuda(); }
gpu_memory_stats gpu_trainer::memory() const { no_cuda(); }
void gpu_trainer::upload_lora(const lora_weights<float>&) { no_cuda(); }
std::vector<std::pair<std::string, tensor>> gpu_trainer::serialize_optimizer_state(param_namer) const { no_cuda(); }
void gpu_trainer::load_optimizer_state(const std::vector<std::pair<std::string, tensor>>&, param_namer) { no_cuda(); }
const memory_plan& gpu_trainer::plan() const { no_cuda(); }
const model_config& gpu_trainer::config() const { no_cuda(); }
std::string gpu_trainer::device_name() const { no_cuda(); }
double gpu_trainer::last_step_ms() const { no_cuda(); }
void gpu_trainer::set_profiling(bool) { no_cuda(); }
std::vector<std::pair<std::string, double>> gpu_trainer::profile() const { no_cuda(); }

std::unique_ptr<train_backend> make_cuda_train_backend(int, const llama_model&, const lora_weights<float>&,
                                                       const memory_plan&, const train_backend_options&) {
    no_cuda();
}
std::unique_ptr<train_backend_builder> begin_cuda_train_backend(int, const model_config&, lora_weights<float>,
                                                                const memory_plan&, const train_backend_options&) {
    no_cuda();
}

struct gpu_nf4_quantizer::impl {};
gpu_nf4_quantizer::gpu_nf4_quantizer(int) { no_cuda(); }
gpu_nf4_quantizer::~gpu_nf4_quantizer() = default;
nf4_tensor gpu_nf4_quantizer::quantize(const float*, int64_t, int64_t, bool, int) { no_cuda(); }
nf4_tensor gpu_nf4_quantizer::quantize_bf16(const uint16_t*, int64_t, int64_t, bool, int) { no_cuda(); }
std::unique_ptr<decoder> make_cuda_decoder(const llama_model&, const lora_weights<float>*, int) { no_cuda(); }
std::unique_ptr<decoder> make_cuda_decoder_synthetic(const model_config&, int, const std::vector<lora_target>&,
                                                     uint64_t, int) {
    no_cuda();
}
cuda_decoder_memory cuda_decoder_memory_of(const decoder&) { no_cuda(); }

} // namespace qls
#endif
