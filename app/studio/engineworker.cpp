// EngineWorker: the one catch site for engine errors in the studio; every result leaves as a signal tagged with its side.
#include "engineworker.h"

#include "qls/architecture.h"
#include "qls/chat.h"
#include "qls/dataset.h"
#include "qls/device.h"
#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/memory_plan.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_plan.h"
#include "qls/tokenizer.h"
#include "qls/train_backend.h"
#include "qls/train_config.h"
#include "qls/trainer.h" // defines: load_run_data

#include <QElapsedTimer>

#include <QFileInfo>
#include <QStringList>
#include <algorithm>
#include <array>
#include <ctime>

EngineWorker::EngineWorker() = default;
EngineWorker::~EngineWorker() = default;

namespace {

std::atomic<int> g_loadDelayMs{0};

ModelInfo describe(const QString& dir, const qls::model_source& src, const qls::llama_model& model,
                   const qls::tokenizer& tok, const std::string& which, const qls::model_chat_template* tmpl) {
    const qls::model_config& c = model.config;
    ModelInfo info;
    info.dir = dir;
    info.architecture = QString::fromStdString(c.model_type);
    info.parameters = c.parameter_count();
    info.layers = c.num_layers;
    info.hidden = c.hidden_size;
    info.mlpHidden = c.intermediate_size;
    info.heads = c.num_heads;
    info.kvHeads = c.num_kv_heads;
    info.headDim = c.head_dim;
    info.vocab = c.vocab_size;
    info.context = c.max_position_embeddings;
    info.ropeTheta = c.rope.theta;
    info.ropeType = QString::fromStdString(c.rope.type);
    info.tiedEmbeddings = c.tie_word_embeddings;
    info.dtype = QString::fromStdString(c.torch_dtype);
    info.format = QString::fromStdString(src.format());
    info.family = QString::fromStdString(qls::architecture_for(c).family);
    for (const std::string& x : qls::family_specifics(c)) info.specifics << QString::fromStdString(x);
    for (const std::string& x : qls::peft_target_modules(qls::architecture_for(c)))
        info.loraTargets << QString::fromStdString(x);
    info.tokenizer = EngineWorker::tr("%1 — %2 tokens, BOS %3, EOS %4")
                         .arg(QString::fromStdString(which))
                         .arg(tok.vocab_size())
                         .arg(tok.bos_id())
                         .arg(tok.eos_id());
    info.chatTemplate = tmpl ? QString::fromStdString(tmpl->tmpl.origin()) : QString();
    return info;
}

} // namespace

void EngineWorker::setLoadDelayForTests(int msPerTensor) { g_loadDelayMs = msPerTensor; }

qls::llama_model EngineWorker::loadWithProgress(const qls::model_source& src, qls::llama_load_options opt) {
    opt.control.cancel = &m_cancelLoad;
    opt.control.test_delay_ms_per_tensor = g_loadDelayMs.load();
    opt.control.on_progress = [this](const qls::load_progress& p) {
        emit loadProgress(p.tensors_done, p.tensors_total, double(p.bytes_done), double(p.bytes_total), p.seconds);
    };
    return qls::llama_model::load(src, opt);
}

bool EngineWorker::loadBase(const QString& dir) {
    try {
        // a Hugging Face directory or a .gguf file
        const std::unique_ptr<qls::model_source> src = qls::open_model_source(dir.toStdString());
        std::string which;
        auto tok = std::make_unique<qls::tokenizer>(src->load_tokenizer(&which));
        std::shared_ptr<const qls::model_chat_template> tmpl = qls::load_model_chat_template(*src, *tok);
        auto model = std::make_unique<qls::llama_model>(loadWithProgress(*src, {}));
        const ModelInfo info = describe(dir, *src, *model, *tok, which, tmpl.get());
        m_chatTemplate = std::move(tmpl);
        m_baseDecoder.reset();
        m_device.reset(); // the choice depends on the model (its head size)
        m_base = std::move(model);
        m_tokenizer = std::move(tok);
        m_baseDir = dir;
        emit modelLoaded(info);
        return true;
    } catch (const qls::error& e) {
        if (e.code() == qls::error_code::cancelled) {
            emit loadCancelled();
            return false;
        }
        emit modelFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit modelFailed(QString::fromStdString(e.what()), QString());
    }
    return false;
}

void EngineWorker::loadModel(const QString& dir) {
    if (loadBase(dir) && m_adapted) unloadAdapter();
}

void EngineWorker::unloadAdapter() {
    m_adaptedDecoder.reset();
    m_adapter.reset();
    m_adapted.reset();
    emit adapterUnloaded();
}

namespace {

bool sameDirectory(const QString& a, const QString& b) {
    const QString ca = QFileInfo(a).canonicalFilePath();
    return !ca.isEmpty() && ca == QFileInfo(b).canonicalFilePath();
}

} // namespace

void EngineWorker::loadRun(const QString& runDir, const QString& checkpointDir) {
    // never hold two adapter-side models at once
    m_adaptedDecoder.reset();
    m_adapter.reset();
    m_adapted.reset();
    try {
        const qls::train_config cfg = qls::load_train_config((runDir + "/config.json").toStdString());
        const QString modelDir = QString::fromStdString(cfg.model);
        if (!m_base || !sameDirectory(modelDir, m_baseDir)) {
            if (!loadBase(modelDir)) {
                if (m_cancelLoad) return; // loadCancelled said it
                emit runFailed(tr("The base model of %1 could not be loaded.").arg(QFileInfo(runDir).fileName()),
                               tr("See the Model page for the reason."));
                return;
            }
        }
        std::unique_ptr<qls::llama_model> model;
        if (cfg.quantize_nf4) {
            qls::llama_load_options opt;
            opt.quantize_nf4 = true;
            opt.double_quant = cfg.double_quant;
            model = std::make_unique<qls::llama_model>(loadWithProgress(*qls::open_model_source(modelDir.toStdString()),
                                                                        opt));
        } else {
            model = std::make_unique<qls::llama_model>(*m_base);
        }
        qls::lora_weights<float> adapter = qls::load_peft(checkpointDir.toStdString(), model->config);
        if (onGpu()) {
            // On the GPU the adapter is applied beside the NF4 weights (x·Aᵀ·Bᵀ·scale), never merged into them.
            m_adapter = std::make_unique<qls::lora_weights<float>>(std::move(adapter));
            m_adapted = std::move(model);
            emit runLoaded(runDir, checkpointDir);
            return;
        }
        const float scale = adapter.config.scale();
        for (size_t l = 0; l < adapter.layers.size(); ++l)
            for (int t = 0; t < qls::k_lora_target_count; ++t) {
                const auto& ad = adapter.layers[l][size_t(t)];
                if (ad.enabled()) qls::lora_merge(model->projection(int(l), qls::lora_target(t)).data(), ad, scale);
            }
        m_adapted = std::move(model);
        emit runLoaded(runDir, checkpointDir);
    } catch (const qls::error& e) {
        if (e.code() == qls::error_code::cancelled) {
            emit loadCancelled();
            return;
        }
        emit runFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit runFailed(QString::fromStdString(e.what()), QString());
    }
}

bool EngineWorker::onGpu() {
    if (!m_device) {
        const int headDim = m_base ? m_base->config.head_dim : 0;
        m_device = std::make_unique<qls::device_choice>(qls::choose_train_device("auto", 0, true, headDim));
    }
    return m_device->device.backend == "cuda";
}

void EngineWorker::generate(const GenerateRequest& request) {
    const ModelSide side = request.side;
    const qls::llama_model* model = side == ModelSide::Adapter ? m_adapted.get() : m_base.get();
    if (!model) {
        if (side == ModelSide::Adapter)
            emit generationFailed(side, tr("No adapter is loaded."),
                                  tr("Open a run's checkpoint from the Runs page, or finish a training run."));
        else emit generationFailed(side, tr("No model is loaded."), tr("Load a model on the Model page first."));
        return;
    }
    if (request.chat && !m_chatTemplate) {
        emit generationFailed(side, tr("This model has no chat template, so it cannot chat."),
                              tr("Use Text completion mode, or load an instruction-tuned model whose files carry a "
                                 "chat template (tokenizer_config.json, chat_template.jinja or GGUF metadata)."));
        return;
    }
    try {
        qls::generate_options o;
        o.prompt = request.prompt.toStdString();
        o.max_new_tokens = request.maxNewTokens;
        o.sampling.temperature = float(request.temperature);
        o.sampling.top_p = float(request.topP);
        o.sampling.top_k = request.topK;
        o.sampling.seed = request.seed;
        QElapsedTimer timer;
        timer.start();
        // The decoder: on the GPU one per side, built at its first generation and kept (its weights stay on the
        // device); on the CPU a fresh one over the model each time (it holds only the cache).
        std::unique_ptr<qls::decoder> cpuDecoder;
        qls::decoder* dec = nullptr;
        if (onGpu()) {
            std::unique_ptr<qls::decoder>& slot = side == ModelSide::Adapter ? m_adaptedDecoder : m_baseDecoder;
            if (!slot)
                slot = qls::make_decoder(*model, m_device->device,
                                         side == ModelSide::Adapter ? m_adapter.get() : nullptr);
            dec = slot.get();
        } else {
            cpuDecoder = qls::make_cpu_decoder(*model);
            dec = cpuDecoder.get();
        }
        // a Stop that came before this request started (the flag is reset when a request is queued) cancels it here
        auto onText = [this, side](const std::string& piece) {
            if (m_stop.load()) return false;
            emit textGenerated(side, QString::fromStdString(piece));
            return !m_stop.load();
        };
        qls::generate_result r;
        if (request.chat) {
            // the conversation through the model's template; only the reply streams, up to the end-of-turn token
            std::vector<qls::chat_message> conversation;
            conversation.reserve(size_t(request.messages.size()));
            for (const ChatTurn& t : request.messages) {
                qls::chat_message m;
                if (t.role == QLatin1String("system")) m.role = qls::chat_role::system;
                else if (t.role == QLatin1String("user")) m.role = qls::chat_role::user;
                else if (t.role == QLatin1String("assistant")) m.role = qls::chat_role::assistant;
                else
                    throw qls::error(qls::error_code::invalid_argument,
                                     "chat message role '" + t.role.toStdString() + "' is not known",
                                     "use system, user or assistant");
                m.content = t.content.toStdString();
                conversation.push_back(std::move(m));
            }
            qls::chat_reply_options co;
            co.max_new_tokens = o.max_new_tokens;
            co.sampling = o.sampling;
            qls::chat_reply reply = qls::generate_chat(*dec, *m_tokenizer, *m_chatTemplate, conversation, co, onText);
            r.new_ids = std::move(reply.new_ids);
            r.reason = reply.reason;
        } else {
            r = qls::generate(*dec, *m_tokenizer, o, onText);
        }
        const double secs = std::max(1e-9, timer.elapsed() / 1000.0);
        QString why = r.reason == qls::stop_reason::eos         ? (request.chat ? tr("end of turn") : tr("end of text"))
                      : r.reason == qls::stop_reason::cancelled ? tr("stopped")
                      : r.reason == qls::stop_reason::context_full ? tr("context full")
                                                                   : tr("token limit");
        emit generationFinished(side, tr("%1 tokens in %2 s (%3 tokens/s), %4, %5")
                                          .arg(r.new_ids.size())
                                          .arg(secs, 0, 'f', 2)
                                          .arg(r.new_ids.size() / secs, 0, 'f', 1)
                                          .arg(why)
                                          .arg(QString::fromStdString(dec->device_label())));
    } catch (const qls::error& e) {
        emit generationFailed(side, QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit generationFailed(side, QString::fromStdString(e.what()), QString());
    }
}

// ---- the time estimate's warm-up ---------------------------------------------------------------------------------

namespace {

// Now on the wall clock and on the process's CPU clock (all its threads), in seconds.
struct Clocks {
    double wall = 0, cpu = 0;
    static Clocks now() {
        timespec w{}, c{};
        clock_gettime(CLOCK_MONOTONIC, &w);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
        return {double(w.tv_sec) + double(w.tv_nsec) * 1e-9, double(c.tv_sec) + double(c.tv_nsec) * 1e-9};
    }
};

} // namespace

void EngineWorker::measureStep(const QString& modelDir, const qls::train_config& config, quint64 key) {
    // At most this much arithmetic (6 × parameters × tokens, the usual training FLOP count) is spent measuring:
    // about a second or two on a laptop core; larger runs get their ETA from their first steps instead.
    constexpr double kMaxFlops = 4e10;
    constexpr qint64 kMaxDataBytes = qint64(16) << 20; // larger data files are not tokenized just for an estimate
    try {
        StepTiming timing;
        // the run's set-up as trainer::build does it: the model source, its tokenizer, the model with the run's NF4
        // settings (always read from disk by a run, even when the Playground holds it), the data tokenized. Timed once
        // per model, data and their settings: a change of rank or steps measures the passes again, not the set-up.
        const QString setupKey = QStringList{modelDir,
                                             QString::fromStdString(config.train_file),
                                             QString::fromStdString(config.validation_file),
                                             QString::number(config.validation_fraction),
                                             QString::fromStdString(config.dataset_format),
                                             QString::fromStdString(config.prompt_template),
                                             QString::number(config.seq_len),
                                             QString::number(config.train_on_prompt),
                                             QString::number(config.skip_malformed),
                                             QString::number(config.seed), // the validation split's
                                             QString::number(config.quantize_nf4),
                                             QString::number(config.double_quant)}
                                     .join('\n');
        const Clocks setupStart = Clocks::now();
        const std::unique_ptr<qls::model_source> src = qls::open_model_source(modelDir.toStdString());
        const double flops = 6.0 * double(src->config().parameter_count()) * config.micro_batch * config.seq_len;
        if (flops > kMaxFlops) {
            emit measureFailed(key, m_base && sameDirectory(modelDir, m_baseDir)
                                        ? tr("a micro-batch of this size takes too long to measure on the CPU; the "
                                             "Monitor shows the ETA after the first step")
                                        : tr("the model is not loaded yet"));
            return;
        }
        std::unique_ptr<qls::llama_model> temporary;
        if (setupKey != m_setupKey) {
            const qls::tokenizer tok = src->load_tokenizer();
            qls::llama_load_options lo;
            lo.quantize_nf4 = config.quantize_nf4;
            lo.double_quant = config.double_quant;
            lo.keep_f32_projections = true; // the CPU backend computes with f32 projections
            temporary = std::make_unique<qls::llama_model>(qls::llama_model::load(*src, lo));
            if (!config.train_file.empty() &&
                QFileInfo(QString::fromStdString(config.train_file)).size() <= kMaxDataBytes &&
                (config.validation_file.empty() ||
                 QFileInfo(QString::fromStdString(config.validation_file)).size() <= kMaxDataBytes)) {
                (void)qls::load_run_data(config, *src, tok);
            }
            const Clocks setupEnd = Clocks::now();
            m_setupKey = setupKey;
            m_setupSeconds = {setupEnd.wall - setupStart.wall, setupEnd.cpu - setupStart.cpu};
        }
        timing.setup = m_setupSeconds.first;
        timing.setupCpu = m_setupSeconds.second;
        // the passes on the model just read, or the one the Playground holds, or one read for them
        if (!temporary && !(m_base && sameDirectory(modelDir, m_baseDir)))
            temporary = std::make_unique<qls::llama_model>(qls::llama_model::load(*src, {}));
        const qls::llama_model& model = temporary ? *temporary : *m_base;

        const qls::model_config& m = model.config;
        const qls::compute_device cpu; // the CPU backend (a GPU run is not measured here)
        // the run's plan arithmetic, without counting it as the run's planning (plan_run_count is the run's)
        const qls::memory_plan plan = qls::make_memory_plan(m, qls::plan_settings_for(config, cpu));
        if (!plan.host.fits) {
            emit measureFailed(key, tr("the run does not fit the machine's memory"));
            return;
        }
        qls::train_backend_options opt;
        opt.adamw = config.adamw;
        const auto backend = qls::make_cpu_train_backend(model, qls::lora_init(m, config.lora, config.seed), plan, opt);
        // a batch of B rows × T tokens (ids spread over the vocabulary), each predicting the next
        const size_t n = size_t(config.micro_batch) * size_t(config.seq_len);
        std::vector<int> tokens(n), targets(n);
        for (size_t i = 0; i < n; ++i) tokens[i] = int((i * 7919u + 13u) % size_t(std::max(1, m.vocab_size)));
        for (size_t i = 0; i < n; ++i) targets[i] = (i + 1) % size_t(config.seq_len) ? tokens[(i + 1) % n] : -1;
        qls::train_batch b;
        b.tokens = tokens.data();
        b.targets = targets.data();
        backend->forward_backward(b, 1); // warm-up: first-touch of buffers, thread pool start
        // the median of three passes (a busy machine makes single timings jump), then one optimizer update and one
        // evaluation batch
        std::array<std::pair<double, double>, 3> passes{};
        for (size_t i = 0; i < passes.size(); ++i) {
            const Clocks t0 = Clocks::now();
            backend->forward_backward(b, 2 + i);
            const Clocks t1 = Clocks::now();
            passes[i] = {t1.wall - t0.wall, t1.cpu - t0.cpu};
        }
        std::sort(passes.begin(), passes.end());
        timing.micro = passes[1].first;
        timing.microCpu = passes[1].second;
        Clocks t0 = Clocks::now();
        backend->optimizer_step(0.0f, 4, config.max_grad_norm);
        Clocks t1 = Clocks::now();
        timing.update = t1.wall - t0.wall;
        timing.updateCpu = t1.cpu - t0.cpu;
        t0 = Clocks::now();
        backend->forward_loss(b);
        t1 = Clocks::now();
        timing.eval = t1.wall - t0.wall;
        timing.evalCpu = t1.cpu - t0.cpu;
        emit stepMeasured(key, timing);
    } catch (const qls::error& e) {
        emit measureFailed(key, QString::fromStdString(e.what()));
    } catch (const std::exception& e) {
        emit measureFailed(key, QString::fromStdString(e.what()));
    }
}
