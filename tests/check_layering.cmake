# Fails when a source file breaks the dependency direction of DESIGN.md:
# engine and kernels never include Qt; engine public headers never include CUDA; kernels never include engine headers;
# ui never includes engine internals or CUDA, and of the public qls/ headers only those on its allowlist (below).
cmake_policy(SET CMP0057 NEW)
file(GLOB_RECURSE engine_files ${SRC}/engine/*.h ${SRC}/engine/*.cpp)
file(GLOB_RECURSE engine_public ${SRC}/engine/include/*.h)
file(GLOB_RECURSE kernel_files ${SRC}/kernels/*.h ${SRC}/kernels/*.cuh ${SRC}/kernels/*.cu ${SRC}/kernels/*.cpp)
file(GLOB_RECURSE ui_files ${SRC}/ui/*.h ${SRC}/ui/*.cpp)
set(bad "")
foreach(f ${engine_files} ${kernel_files})
  file(STRINGS ${f} hits REGEX "#include *<Q")
  if(hits)
    list(APPEND bad "${f}: includes Qt (${hits})")
  endif()
endforeach()
foreach(f ${engine_public})
  file(STRINGS ${f} hits REGEX "#include *<(cuda|cublas|cuda_runtime)")
  if(hits)
    list(APPEND bad "${f}: public engine header includes CUDA (${hits})")
  endif()
endforeach()
foreach(f ${kernel_files})
  file(STRINGS ${f} hits REGEX "#include *[<\"]qls/")
  if(hits)
    list(APPEND bad "${f}: kernels include engine headers (${hits})")
  endif()
endforeach()
foreach(f ${ui_files})
  file(STRINGS ${f} hits REGEX "#include *[<\"](backends/|model/|io/|cuda)")
  if(hits)
    list(APPEND bad "${f}: ui includes engine internals or CUDA (${hits})")
  endif()
endforeach()
# ui/ sees the engine through value headers and the use-cases written for it; the engine's workers (the trainer, the
# model, the readers, the backends) are reached only through app/ (the studio's worker and controller, the CLI), which
# may include anything. The allowlist, and why each is on it:
#   error.h            qls::error: what ui/ shows when a use-case refuses (message + hint)
#   telemetry.h        step_stats: the per-step values the Monitor charts
#   train_config.h     the run's settings the setup pages edit, their JSON form (presets) and range checks
#   model_config.h     a model's dimensions (the Plan page, shape_config)
#   memory_plan.h      the plan's values (categories, verdict, suggestions) the Plan and Monitor pages draw
#   run_plan.h         the one plan path: plan_settings_for + plan_run, so the Plan page plans exactly as the run does
#   device.h           compute_device: the device the run uses, which the plan is made for
#   run_export.h, run_catalog.h, dataset_analysis.h
#                      the use-cases ui/ calls (export a checkpoint, find runs, analyse a dataset), plain values in/out
# Not on it: dataset.h (its readers and batcher are engine work; dataset_analysis.h brings the format/template enums
# and dataset_stats the Dataset page shows), tokenizer.h, hf_checkpoint.h, llama.h, peft.h, trainer.h, ...
set(ui_allowed_qls error.h telemetry.h train_config.h model_config.h memory_plan.h run_plan.h device.h
    run_export.h run_catalog.h dataset_analysis.h)
foreach(f ${ui_files})
  file(STRINGS ${f} qls_includes REGEX "#include *[<\"]qls/")
  foreach(line ${qls_includes})
    string(REGEX REPLACE ".*#include *[<\"]qls/([^>\"]+)[>\"].*" "\\1" header "${line}")
    if(NOT header IN_LIST ui_allowed_qls)
      list(APPEND bad "${f}: ui includes qls/${header}, which is not on ui's allowlist (check_layering.cmake)")
    endif()
  endforeach()
endforeach()
# The trainer drives train_backend (train_backend.h) and never branches on the backend: no CUDA, gpu_trainer or
# llama_pass in trainer.cpp, and no comparison of the backend's kind.
file(STRINGS ${SRC}/engine/src/train/trainer.cpp lines REGEX "cuda|CUDA|gpu_|llama_pass|kind\\(\\) *[=!]=|backend *[=!]= *\"")
foreach(line ${lines})
  if(NOT line MATCHES "^ *//")   # comments may say what the backends are
    list(APPEND bad "engine/src/train/trainer.cpp: branches on or names a backend (${line})")
  endif()
endforeach()
if(bad)
  string(REPLACE ";" "\n" msg "${bad}")
  message(FATAL_ERROR "layering violations:\n${msg}")
endif()
message(STATUS "layering OK")
