// gpu_offload — gradient checkpoints in pinned host memory behind a device ring of checkpoint_ring_slots layer
// inputs (memory_plan.h checkpoint_offload): the copies run on their own stream and every hand-over is an event.
//
// Ring slot s = l % R holds layer l's input (B*T*C bf16). Per slot four events:
//   ev_filled  main stream: the slot's input is complete (embedding or the previous layer wrote it)
//   ev_saved   offload stream: the slot's copy to the host is done (the slot may be written again)
//   ev_loaded  offload stream: the slot's copy from the host is done (the slot may be read)
//   ev_read    main stream: the layer that read the slot in the backward is done (the slot may be loaded again)
// Waiting on an event never recorded returns at once (cudaStreamWaitEvent), so the first uses need no special case.
#include "gpu_train_impl.h"

namespace qls {

void gpu_trainer::impl::init_offload() {
    // the host item is not in the device arena (cuda_arena takes device items only): ask the plan
    offload = ckpt && plan.checkpoints_offloaded();
    if (!offload) return;
    const size_t bytes = size_t(L) * size_t(N) * size_t(C) * sizeof(bf16);
    const cudaError_t st = cudaHostAlloc(reinterpret_cast<void**>(&host_ckpt), bytes, cudaHostAllocDefault);
    if (st != cudaSuccess) {
        cudaGetLastError();
        host_ckpt = nullptr;
        throw error(error_code::out_of_memory,
                    "cannot pin " + std::to_string(bytes >> 20) + " MiB of host memory for the offloaded checkpoints (" +
                        cudaGetErrorString(st) + ")",
                    "free host memory, or lower training.seq_len or micro_batch so the checkpoints fit the device");
    }
    QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&offload_stream, cudaStreamNonBlocking));
    for (int s = 0; s < checkpoint_ring_slots; ++s) {
        for (cudaEvent_t* e : {&ev_filled[size_t(s)], &ev_saved[size_t(s)], &ev_loaded[size_t(s)], &ev_read[size_t(s)]})
            QLS_CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
        slot_layer[size_t(s)] = -1;
    }
}

void gpu_trainer::impl::free_offload() {
    if (offload_stream) cudaStreamSynchronize(offload_stream);
    for (int s = 0; s < checkpoint_ring_slots; ++s)
        for (cudaEvent_t e : {ev_filled[size_t(s)], ev_saved[size_t(s)], ev_loaded[size_t(s)], ev_read[size_t(s)]})
            if (e) cudaEventDestroy(e);
    if (offload_stream) cudaStreamDestroy(offload_stream);
    if (host_ckpt) cudaFreeHost(host_ckpt);
    offload_stream = nullptr;
    host_ckpt = nullptr;
}

// Before layer l's forward: its input is complete in slot l % R (stream order); save it when a backward follows;
// layer l then writes layer l+1's input into slot (l+1) % R, so that slot's earlier copy out must be done.
void gpu_trainer::impl::offload_before_forward(int l, bool save) {
    const size_t in = size_t(l % checkpoint_ring_slots);
    slot_layer[in] = l;
    if (save) {
        const size_t n = size_t(N) * size_t(C);
        QLS_CUDA_CHECK(cudaEventRecord(ev_filled[in], stream));
        QLS_CUDA_CHECK(cudaStreamWaitEvent(offload_stream, ev_filled[in], 0));
        QLS_CUDA_CHECK(cudaMemcpyAsync(host_ckpt + size_t(l) * n, resid_in(l), n * sizeof(bf16),
                                       cudaMemcpyDeviceToHost, offload_stream));
        QLS_CUDA_CHECK(cudaEventRecord(ev_saved[in], offload_stream));
        offload_d2h_bytes += n * sizeof(bf16);
    }
    if (l + 1 < L) {
        const size_t out = size_t((l + 1) % checkpoint_ring_slots);
        QLS_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_saved[out], 0));
        QLS_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_loaded[out], 0)); // a backward's load into it, if any
        slot_layer[out] = l + 1;                                         // once layer l has run
    }
}

// Before layer l's backward: its input must be in slot l % R (the last R layers' still are after the forward), and
// layer l-1's is fetched now, into the slot that layer l+2 read, so it arrives while layer l computes.
void gpu_trainer::impl::offload_before_backward(int l) {
    const size_t n = size_t(N) * size_t(C);
    auto fetch = [&](int layer) {
        const size_t s = size_t(layer % checkpoint_ring_slots);
        QLS_CUDA_CHECK(cudaStreamWaitEvent(offload_stream, ev_read[s], 0));
        QLS_CUDA_CHECK(cudaMemcpyAsync(resid_in(layer), host_ckpt + size_t(layer) * n, n * sizeof(bf16),
                                       cudaMemcpyHostToDevice, offload_stream));
        QLS_CUDA_CHECK(cudaEventRecord(ev_loaded[s], offload_stream));
        slot_layer[s] = layer;
        offload_h2d_bytes += n * sizeof(bf16);
    };
    const size_t s = size_t(l % checkpoint_ring_slots);
    if (slot_layer[s] != l) fetch(l);
    if (l > 0 && slot_layer[size_t((l - 1) % checkpoint_ring_slots)] != l - 1) fetch(l - 1);
    QLS_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_loaded[s], 0));
}

void gpu_trainer::impl::offload_after_backward(int l) {
    QLS_CUDA_CHECK(cudaEventRecord(ev_read[size_t(l % checkpoint_ring_slots)], stream));
}

} // namespace qls
