// make_train_backend: the device's backend behind qls::train_backend (the CPU reference or CUDA).
#include "qls/train_backend.h"

#include "qls/error.h"

namespace qls {

std::unique_ptr<train_backend> make_train_backend(const compute_device& device, const llama_model& model,
                                                  const lora_weights<float>& init, const memory_plan& plan,
                                                  const train_backend_options& opt) {
    if (device.backend == "cuda") return make_cuda_train_backend(device.index, model, init, plan, opt);
    if (device.backend != "cpu")
        throw error(error_code::device, "unknown backend \"" + device.backend + "\"", "use cpu or cuda");
    return make_cpu_train_backend(model, init, plan, opt);
}

bool backend_keeps_f32_projections(const compute_device& device) { return device.backend != "cuda"; }

} // namespace qls
