// EngineWorker: the one catch site for engine errors in the studio; every result leaves as a signal.
#include "engineworker.h"

#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/peft.h"
#include "qls/train_config.h"
#include "qls/tokenizer.h"

#include <QElapsedTimer>

EngineWorker::EngineWorker() = default;
EngineWorker::~EngineWorker() = default;

namespace {

ModelInfo describe(const QString& dir, const qls::llama_model& model, const qls::tokenizer& tok) {
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
    info.tokenizer = EngineWorker::tr("tokenizer.model: %1 pieces, BOS %2, EOS %3 — matches the model")
                         .arg(tok.vocab_size())
                         .arg(tok.bos_id())
                         .arg(tok.eos_id());
    return info;
}

} // namespace

void EngineWorker::loadModel(const QString& dir) {
    try {
        qls::hf_checkpoint ckpt = qls::hf_checkpoint::open(dir.toStdString());
        auto tok = std::make_unique<qls::tokenizer>(qls::load_tokenizer_for(ckpt));
        auto model = std::make_unique<qls::llama_model>(qls::llama_model::load(ckpt));
        const ModelInfo info = describe(dir, *model, *tok);
        m_model = std::move(model);
        m_tokenizer = std::move(tok);
        emit modelLoaded(info);
    } catch (const qls::error& e) {
        emit modelFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit modelFailed(QString::fromStdString(e.what()), QString());
    }
}

void EngineWorker::loadRun(const QString& runDir, const QString& checkpointDir) {
    try {
        const qls::train_config cfg = qls::load_train_config((runDir + "/config.json").toStdString());
        qls::hf_checkpoint ckpt = qls::hf_checkpoint::open(cfg.model);
        auto tok = std::make_unique<qls::tokenizer>(qls::load_tokenizer_for(ckpt));
        qls::llama_load_options opt;
        opt.quantize_nf4 = cfg.quantize_nf4;
        opt.double_quant = cfg.double_quant;
        auto model = std::make_unique<qls::llama_model>(qls::llama_model::load(ckpt, opt));
        const qls::lora_weights<float> adapter = qls::load_peft(checkpointDir.toStdString(), model->config);
        const float scale = adapter.config.scale();
        for (size_t l = 0; l < adapter.layers.size(); ++l)
            for (int t = 0; t < qls::k_lora_target_count; ++t) {
                const auto& ad = adapter.layers[l][size_t(t)];
                if (ad.enabled()) qls::lora_merge(model->projection(int(l), qls::lora_target(t)).data(), ad, scale);
            }
        const ModelInfo info = describe(QString::fromStdString(cfg.model), *model, *tok);
        m_model = std::move(model);
        m_tokenizer = std::move(tok);
        emit modelLoaded(info);
        emit runLoaded(runDir, checkpointDir);
    } catch (const qls::error& e) {
        emit modelFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit modelFailed(QString::fromStdString(e.what()), QString());
    }
}

void EngineWorker::generate(const GenerateRequest& request) {
    if (!m_model) {
        emit generationFailed(tr("No model is loaded."), tr("Load a model on the Model page first."));
        return;
    }
    m_stop = false;
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
        qls::generate_result r = qls::generate(*m_model, *m_tokenizer, o, [this](const std::string& piece) {
            emit textGenerated(QString::fromStdString(piece));
            return !m_stop.load();
        });
        const double secs = std::max(1e-9, timer.elapsed() / 1000.0);
        QString why = r.reason == qls::stop_reason::eos            ? tr("end of text")
                      : r.reason == qls::stop_reason::cancelled    ? tr("stopped")
                      : r.reason == qls::stop_reason::context_full ? tr("context full")
                                                                   : tr("token limit");
        emit generationFinished(tr("%1 tokens in %2 s (%3 tokens/s), %4")
                                    .arg(r.new_ids.size())
                                    .arg(secs, 0, 'f', 2)
                                    .arg(r.new_ids.size() / secs, 0, 'f', 1)
                                    .arg(why));
    } catch (const qls::error& e) {
        emit generationFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception& e) {
        emit generationFailed(QString::fromStdString(e.what()), QString());
    }
}
