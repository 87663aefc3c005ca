// qlora — the command-line front end: dispatches subcommands, the one place CLI errors are caught and printed.
#include "args.h"
#include "commands.h"

#include "qls/error.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

static void print_usage(FILE* f) {
    std::fprintf(
        f,
        "qlora %s — QLoRA fine-tuning engine\n"
        "\n"
        "usage: qlora <command> [options]\n"
        "\n"
        "commands:\n"
        "  generate   sample text from a model, optionally with a LoRA adapter\n"
        "             --model DIR|FILE.gguf [--adapter DIR [--nf4]] [--prompt TEXT | --chat TEXT [--system TEXT]]\n"
        "             [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
        "             [--device auto|cpu|cuda] [--gpu N] (--chat: one reply through the model's chat template)\n"
        "  train      fine-tune from a run configuration: --config run.json [--quiet] [--full]\n"
        "             (Ctrl-C saves a checkpoint and exits; format in README.md)\n"
        "  resume     continue a run from its newest checkpoint: RUN_DIR [--quiet]\n"
        "  export     write a run's adapter: RUN_DIR --format peft|merged|gguf-adapter|gguf [--checkpoint DIR]\n"
        "             [--out DIR] [--quant f16|bf16|q8_0|q4_0|q4_k_m] [--dtype f32|f16] [--merge nf4|original|none]\n"
        "             [--force] (replace the contents of an existing, non-empty --out folder)\n"
        "  info       describe a model: --model DIR|FILE.gguf\n"
        "  logits     write the CPU forward's logits: --model DIR|FILE.gguf --tokens ID,... --out FILE.safetensors\n"
        "             [--adapter PEFT_DIR]\n"
        "  tokenize   show the ids and pieces of a text as the model's prompt: --model DIR|FILE.gguf\n"
        "             --text TEXT [--json] (special tokens in the text recognized; BOS as the tokenizer adds it)\n"
        "  plan       predict device memory and whether a run fits\n"
        "             (--model DIR | --shape NAME) [--seq N] [--batch N] [--rank N]\n"
        "             NAME: 7b 13b 33b 65b 70b llama3.1-8b qwen2.5-7b qwen3-8b mistral-nemo-12b gemma3-12b\n"
        "             [--alpha A] [--dropout P] [--targets q,k,v,o,gate,up,down]\n"
        "             [--optimizer paged-adamw-8bit|paged-adamw-32bit|adamw-8bit|adamw-32bit]\n"
        "             [--no-checkpointing] [--checkpoint-offload auto|on|off] [--budget-gib G] [--card-gib G]\n"
        "             [--json] [--items]\n"
        "  devices    say which compute device this process can use\n"
        "  check-gpu  compare every CUDA kernel with the CPU reference on fresh random inputs\n"
        "  bench      time QLoRA training steps of a synthetic model shape on the GPU (--json)\n"
        "             [--seed S]; exits non-zero when any check fails or there is no GPU\n"
        "  --version  print the version\n",
        QLS_VERSION);
}

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    try {
        if (cmd == "--version" || cmd == "version") {
            std::printf("qlora %s\n", QLS_VERSION);
            return 0;
        }
        if (cmd == "--help" || cmd == "-h" || cmd == "help") {
            print_usage(stdout);
            return 0;
        }
        if (cmd == "generate") return qlora_cli::cmd_generate(argc, argv);
        if (cmd == "info") return qlora_cli::cmd_info(argc, argv);
        if (cmd == "plan") return qlora_cli::cmd_plan(argc, argv);
        if (cmd == "train") return qlora_cli::cmd_train(argc, argv);
        if (cmd == "resume") return qlora_cli::cmd_resume(argc, argv);
        if (cmd == "export") return qlora_cli::cmd_export(argc, argv);
        if (cmd == "check-gpu") return qlora_cli::cmd_check_gpu(argc, argv);
        if (cmd == "devices") return qlora_cli::cmd_devices(argc, argv);
        if (cmd == "bench") return qlora_cli::cmd_bench(argc, argv);
        if (cmd == "logits") return qlora_cli::cmd_logits(argc, argv);
        if (cmd == "tokenize") return qlora_cli::cmd_tokenize(argc, argv);
        std::fprintf(stderr, "qlora: unknown command '%s'\n\n", cmd.c_str());
        print_usage(stderr);
        return 2;
    } catch (const qlora_cli::usage_error& e) {
        std::fprintf(stderr, "qlora %s: %s\n", cmd.c_str(), e.describe().c_str());
        return 2;
    } catch (const qls::error& e) {
        std::fprintf(stderr, "qlora %s: error: %s\n", cmd.c_str(), e.describe().c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "qlora %s: unexpected error: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
