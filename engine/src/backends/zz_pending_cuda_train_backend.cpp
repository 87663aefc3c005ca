// TEMPORARY until the CUDA backend branch lands (deleted at its merge).
#include "qls/train_backend.h"
#include "qls/error.h"
namespace qls {
std::unique_ptr<train_backend> make_cuda_train_backend(int, const llama_model&, const lora_weights<float>&,
                                                       const memory_plan&, const train_backend_options&) {
    throw error(error_code::device, "pending");
}
} // namespace qls
