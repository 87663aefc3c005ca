// Value types the studio pages show and emit: a model's description and a generation request (Qt types only).
#pragma once

#include <QList>
#include <QMetaType>
#include <QString>
#include <QStringList>

struct ModelInfo {
    QString dir;
    QString architecture;
    qint64 parameters = 0;
    int layers = 0;
    int hidden = 0;
    int mlpHidden = 0;
    int heads = 0;
    int kvHeads = 0;
    int headDim = 0;
    int vocab = 0;
    int context = 0;
    double ropeTheta = 0;
    QString ropeType;
    bool tiedEmbeddings = false;
    QString dtype;
    QString tokenizer;       // "tokenizer.model: 512 pieces, BOS 1, EOS 2"
    QString format;          // "safetensors" or "gguf"
    QString family;          // the architecture table's family, e.g. "llama"
    QStringList specifics;   // what sets its layers apart from LLaMA's (qls::family_specifics); empty for LLaMA-2
    QStringList loraTargets; // PEFT's target module names for its projections, in lora_target order
    QString chatTemplate;    // where the chat template comes from; empty when the model has none
};

// One message of a Playground chat: role "system", "user" or "assistant".
struct ChatTurn {
    QString role;
    QString content;
};

// Which of the Playground's two models a request uses and a result belongs to: the base model as loaded, or the base
// with a run's PEFT adapter merged into its projections.
enum class ModelSide { Base, Adapter };

struct GenerateRequest {
    QString prompt;
    int maxNewTokens = 200;
    double temperature = 0.8;
    double topP = 0.9;
    int topK = 0;
    quint64 seed = 1;
    ModelSide side = ModelSide::Base;
    // Chat mode: `messages` (the conversation so far, ending with the user's turn) goes through the model's chat
    // template with the generation prompt, and only the reply is streamed back; `prompt` is not used.
    bool chat = false;
    QList<ChatTurn> messages;
};

Q_DECLARE_METATYPE(ModelInfo)
Q_DECLARE_METATYPE(GenerateRequest)
Q_DECLARE_METATYPE(ModelSide)
