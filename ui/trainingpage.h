// TrainingPage — LoRA, optimizer, schedule, batch, steps, checkpointing and device settings, with inline validation and JSON presets.
#pragma once

#include <QWidget>

#include "qls/model_config.h"

#include <functional>
#include <optional>
#include <vector>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QSpinBox;
class QFormLayout;

namespace qls {
struct train_config;
}

// Every input writes one field of qls::train_config. Validation reuses qls::validate_train_config: each field is
// checked on its own (its value on top of the defaults), so every wrong field shows the engine's message, naming
// the field and the fix, in red right below it; refused values are never clamped away.
//
// Presets are run.json fragments: the sections "lora", "quantization", "optimizer" (kind, lr, weight_decay,
// max_grad_norm, schedule, warmup_steps, warmup_ratio), "training" (every key) and "device" (budget_gib), with the
// keys and meaning of run.json (README.md). A preset can be pasted into a run.json as is; loading one goes through
// qls::parse_train_config, so unknown keys, wrong types and out-of-range values are refused with the parser's
// message ("preset.json: lora.rank: ...").
class TrainingPage : public QWidget {
    Q_OBJECT
public:
    explicit TrainingPage(QWidget* parent = nullptr);
    ~TrainingPage() override;

    // Writes the page's fields into c (other fields are left as they are). Call validate() first.
    void applyTo(qls::train_config& c) const;
    // Shows the page's fields of c.
    void loadFrom(const qls::train_config& c);
    // Checks every field, shows each problem below its field; false with the first problem in *reason.
    bool validate(QString* reason = nullptr) const;

    // Preset files (format above); false with the reason in *error (also shown on the page).
    bool savePreset(const QString& path, QString* error = nullptr) const;
    bool loadPreset(const QString& path, QString* error = nullptr);

    // The inline message shown for a run.json key ("lora.rank", "optimizer.lr", "training.seq_len", ...); empty when
    // the field is valid or unknown.
    QString fieldError(const QString& key) const;

    // The chosen model's limits the settings are checked against as they are typed (the sequence length against the
    // context); nullopt: no model, only the engine's own rules.
    void setModelLimits(const std::optional<qls::model_config>& model);
    // The loaded model's module names for the seven projections (ModelInfo::loraTargets, in lora_target order) and
    // its family, for the target checkboxes' tooltips; empty: the LLaMA names.
    void setTargetNames(const QStringList& names, const QString& family);
    // The training data's size (the Dataset page's analysis: examples, tokens after truncation to analysedSeqLen, the
    // sequence length it was made with; 0: not truncated). The page then refuses a sequence length longer than the
    // whole data, says how many epochs the steps are ("N steps = E epochs of your data"), and notes a step larger
    // than the data and intervals larger than the run (qls::check_train_config_for_data). 0, 0: no data known.
    void setDatasetSize(qint64 examples, qint64 tokens, int analysedSeqLen = 0);
    QString dataCoverageText() const;
    // The note shown below a field (amber: the run starts, but probably not as meant), for a run.json key; empty when
    // there is none. Notes come from the engine's checks against the model and the data (qls::config_note).
    QString fieldNote(const QString& key) const;
    // A run is going: the page says its changes apply to the next run.
    void setRunActive(bool active);
    bool runActiveNoteVisible() const;
    // An engine message in the page's words: run.json keys become the fields' names ("training.seq_len" →
    // "Sequence length"), and no message sends a studio user to README.md.
    QString inFieldNames(const QString& message) const;

signals:
    void changed();

private:
    struct Field {
        QString key;   // run.json key, e.g. "training.seq_len"
        QString label; // what the form calls it
        QWidget* input = nullptr;
        QLabel* error = nullptr;                       // red, below the input; hidden when valid (or a note)
        std::function<void(qls::train_config&)> write; // this field's value into a config (may throw qls::error)
        QString note; // the engine's note (amber), in the error's label when the field is valid
    };
    QWidget* addField(QFormLayout* form, const QString& key, const QString& label, QWidget* input,
                      const QString& tooltip, std::function<void(qls::train_config&)> write);
    QString checkField(const Field& f) const;
    void onEdited();
    void updateDerived();
    void updateNotes();
    bool dataTokensExact() const;
    qint64 dataTokensAtLeast(int seqLen) const;
    void showFieldMessage(const Field& f, const QString& error) const;
    void savePresetInteractive();
    void loadPresetInteractive();

    std::vector<Field> m_fields;
    // LoRA
    QSpinBox* m_rank;
    QDoubleSpinBox* m_alpha;
    QDoubleSpinBox* m_dropout;
    std::vector<QCheckBox*> m_targets; // q k v o gate up down, in qls::lora_target order
    QCheckBox* m_rslora;
    QCheckBox* m_nf4;
    QCheckBox* m_doubleQuant;
    QLabel* m_scale;
    // optimizer
    QComboBox* m_optimizer;
    QLineEdit* m_lr;
    QComboBox* m_schedule;
    QSpinBox* m_warmupSteps;
    QDoubleSpinBox* m_warmupRatio;
    QDoubleSpinBox* m_weightDecay;
    QDoubleSpinBox* m_maxGradNorm;
    // steps
    QSpinBox* m_seqLen;
    QSpinBox* m_microBatch;
    QSpinBox* m_gradAccum;
    QCheckBox* m_packing;
    QDoubleSpinBox* m_epochs;
    QSpinBox* m_maxSteps;
    QSpinBox* m_evalEvery;
    QSpinBox* m_evalBatches;
    QCheckBox* m_gradientCheckpointing;
    QComboBox* m_checkpointOffload; // device.checkpoint_offload: auto | on | off
    QSpinBox* m_checkpointEvery;
    QSpinBox* m_keepCheckpoints;
    QLabel* m_effectiveBatch;
    QLabel* m_dataCoverage;
    qint64 m_dataExamples = 0, m_dataTokens = 0;
    int m_dataSeqLen = 0;
    // device
    QDoubleSpinBox* m_budget;
    QLineEdit* m_seed;
    QLabel* m_presetStatus;
    QLabel* m_runNote;
    std::optional<qls::model_config> m_model;
    bool m_loading = false;
};
