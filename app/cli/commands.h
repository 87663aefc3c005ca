// The qlora subcommands; each parses its own flags and returns the process exit status.
#pragma once

namespace qlora_cli {

int cmd_generate(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_plan(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_resume(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_check_gpu(int argc, char** argv);
int cmd_devices(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_logits(int argc, char** argv);

} // namespace qlora_cli
