// make_train_backend: the device's backend behind qls::train_backend (the CPU reference or CUDA).
#include "qls/train_backend.h"

#include "qls/error.h"
#include "qls/gpu_train.h" // defines: gpu_nf4_quantizer, quantize_on

namespace qls {

std::unique_ptr<train_backend> make_train_backend(const compute_device& device, const llama_model& model,
                                                  const lora_weights<float>& init, const memory_plan& plan,
                                                  const train_backend_options& opt) {
    if (device.backend == "cuda") return make_cuda_train_backend(device.index, model, init, plan, opt);
    if (device.backend != "cpu")
        throw error(error_code::device, "unknown backend \"" + device.backend + "\"", "use cpu or cuda");
    return make_cpu_train_backend(model, init, plan, opt);
}

namespace {

// The CPU reference computes with the loaded model: no sink, the backend is made from the model after the load.
class cpu_backend_builder final : public train_backend_builder {
public:
    cpu_backend_builder(lora_weights<float> init, const memory_plan& plan, const train_backend_options& opt)
        : init_(std::move(init)), plan_(plan), opt_(opt) {}
    weight_sink* sink() override { return nullptr; }
    std::unique_ptr<train_backend> finish(const llama_model& model) override {
        return make_cpu_train_backend(model, init_, plan_, opt_);
    }

private:
    lora_weights<float> init_;
    memory_plan plan_;
    train_backend_options opt_;
};

} // namespace

std::unique_ptr<train_backend_builder> begin_train_backend(const compute_device& device, const model_config& cfg,
                                                           lora_weights<float> init, const memory_plan& plan,
                                                           const train_backend_options& opt) {
    if (device.backend == "cuda") return begin_cuda_train_backend(device.index, cfg, std::move(init), plan, opt);
    if (device.backend != "cpu")
        throw error(error_code::device, "unknown backend \"" + device.backend + "\"", "use cpu or cuda");
    return std::make_unique<cpu_backend_builder>(std::move(init), plan, opt);
}

bool backend_keeps_f32_projections(const compute_device& device) { return device.backend != "cuda"; }

std::shared_ptr<void> prepare_backend_load(const compute_device& device, llama_load_options& lo) {
    lo.keep_f32_projections = backend_keeps_f32_projections(device);
    if (device.backend != "cuda" || !lo.quantize_nf4 || lo.keep_f32_projections) return nullptr;
    auto q = std::make_shared<gpu_nf4_quantizer>(device.index);
    quantize_on(*q, lo);
    return q;
}

} // namespace qls
