// TrainingPage: the hyperparameter form; every field is checked by the engine's validate_train_config and presets go through its JSON parser.
#include "trainingpage.h"

#include "qls/error.h"
#include "qls/memory_plan.h"
#include "qls/train_config.h"

#include <QAbstractSpinBox>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPushButton>
#include <QRegularExpression>
#include <QSaveFile>
#include <QScrollArea>
#include <QSpinBox>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace {

const char* k_errorStyle = "color:#b00020";
const char* k_noteStyle = "color:#a15c00"; // a note: the run starts, but probably not as meant

using json = nlohmann::json;

// The sections and keys of run.json a preset holds (the page's fields); data and device hold one key each.
const char* const k_presetSections[] = {"lora", "quantization", "training"};
const char* const k_presetOptimizerKeys[] = {"kind",     "lr",           "weight_decay", "max_grad_norm",
                                             "schedule", "warmup_steps", "warmup_ratio"};

QString engineMessage(const qls::error& e) {
    QString m = QString::fromStdString(e.what());
    if (!e.hint().empty()) m += QObject::tr(" — fix: %1").arg(QString::fromStdString(e.hint()));
    return m;
}

// validate_train_config also checks fields other pages own (model, data.train). A reference config gives those
// values that pass, so that every message checkField() gets is about the field being checked.
qls::train_config referenceConfig() {
    qls::train_config c;
    c.model = "model";
    c.train_file = "train.jsonl";
    return c;
}

// The shortest text that reads back as the same float (2e-4f shows as "0.0002", not "0.000199999995").
QString numberText(float v) {
    for (int digits = 1; digits < 9; ++digits) {
        const QString t = QLocale::c().toString(double(v), 'g', digits);
        if (float(QLocale::c().toDouble(t)) == v) return t;
    }
    return QLocale::c().toString(double(v), 'g', 9);
}

} // namespace

TrainingPage::TrainingPage(QWidget* parent) : QWidget(parent) {
    const qls::train_config d; // the defaults (QLoRA paper settings) are the engine's
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(0, 0, 0, 0);
    auto* scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    outer->addWidget(scroll);
    auto* content = new QWidget(scroll);
    scroll->setWidget(content);
    auto* layout = new QVBoxLayout(content);

    auto* title = new QLabel(tr("<h2>Training</h2>Defaults are the QLoRA paper's settings for 7B/13B models "
                                "(Dettmers et al. 2023). Hover over a field to see what it does."),
                             content);
    title->setWordWrap(true);
    layout->addWidget(title);
    m_runNote = new QLabel(tr("<b>A run is in progress:</b> changes made here apply to the next run, not to the one "
                              "training now."),
                           content);
    m_runNote->setObjectName("runActiveNote");
    m_runNote->setWordWrap(true);
    m_runNote->setAutoFillBackground(true);
    m_runNote->setMargin(6);
    m_runNote->setBackgroundRole(QPalette::ToolTipBase);
    m_runNote->setForegroundRole(QPalette::ToolTipText);
    m_runNote->hide();
    layout->addWidget(m_runNote);

    auto* presetRow = new QHBoxLayout;
    auto* savePreset = new QPushButton(tr("Save preset…"), content);
    savePreset->setToolTip(tr("Write these settings to a JSON file (a run.json fragment: sections lora, quantization, "
                              "optimizer, training and device.budget_gib)"));
    auto* loadPreset = new QPushButton(tr("Load preset…"), content);
    loadPreset->setToolTip(tr("Read settings from a preset or a run.json; keys it does not set keep their current "
                              "values, invalid values are refused with the reason"));
    auto* defaults = new QPushButton(tr("Reset to defaults"), content);
    defaults->setToolTip(tr("The QLoRA paper's settings: rank 64, alpha 16, dropout 0.1, all seven projections, paged "
                            "AdamW 8-bit, lr 2e-4 constant with 3% warmup, batch 1 × 16 accumulation"));
    m_presetStatus = new QLabel(content);
    m_presetStatus->setWordWrap(true);
    m_presetStatus->setTextInteractionFlags(Qt::TextSelectableByMouse);
    presetRow->addWidget(savePreset);
    presetRow->addWidget(loadPreset);
    presetRow->addWidget(defaults);
    presetRow->addWidget(m_presetStatus, 1);
    layout->addLayout(presetRow);

    auto* grid = new QGridLayout;
    layout->addLayout(grid);
    auto group = [content](const QString& name, QFormLayout*& form) {
        auto* g = new QGroupBox(name, content);
        form = new QFormLayout(g);
        form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
        return g;
    };
    auto spin = [content](int lo, int hi, int value) {
        auto* s = new QSpinBox(content);
        s->setRange(lo, hi);
        s->setValue(value);
        return s;
    };
    auto dspin = [content](double lo, double hi, int decimals, double step, double value) {
        auto* s = new QDoubleSpinBox(content);
        s->setRange(lo, hi);
        s->setDecimals(decimals);
        s->setSingleStep(step);
        s->setValue(value);
        return s;
    };
    auto check = [content](const QString& text, bool on) {
        auto* c = new QCheckBox(text, content);
        c->setChecked(on);
        return c;
    };

    // ---- LoRA ---------------------------------------------------------------------------------------------------
    QFormLayout* lora = nullptr;
    grid->addWidget(group(tr("LoRA adapters"), lora), 0, 0);
    // Ranges include the first invalid value next to the valid ones, so a wrong entry is refused with a reason
    // instead of silently clamped.
    m_rank = spin(0, 4096, d.lora.rank);
    addField(lora, "lora.rank", tr("Rank r"), m_rank,
             tr("Inner dimension of each adapter (A is r × in, B is out × r). More rank = more trainable parameters "
                "and memory. The QLoRA paper uses 64; 8–64 is typical. Must be at least 1."),
             [this](qls::train_config& c) { c.lora.rank = m_rank->value(); });
    m_alpha = dspin(0, 100000, 2, 1, d.lora.alpha);
    addField(lora, "lora.alpha", tr("Alpha"), m_alpha,
             tr("Scales the adapter's output: scale = alpha / r (alpha / √r with rsLoRA). The QLoRA paper uses 16 with "
                "rank 64. Must be positive."),
             [this](qls::train_config& c) { c.lora.alpha = float(m_alpha->value()); });
    m_dropout = dspin(0, 1, 3, 0.01, d.lora.dropout);
    addField(lora, "lora.dropout", tr("Dropout"), m_dropout,
             tr("Probability of zeroing each adapter input during training (regularisation). QLoRA: 0.1 for 7B/13B, "
                "0.05 for 33B/65B; 0 turns it off. Must be in [0, 1)."),
             [this](qls::train_config& c) { c.lora.dropout = float(m_dropout->value()); });
    auto* targetBox = new QWidget(content);
    // attention projections on the first row, MLP ones on the second: the column stays narrow at 1024 px
    auto* targetRow = new QGridLayout(targetBox);
    targetRow->setContentsMargins(0, 0, 0, 0);
    targetRow->setHorizontalSpacing(10);
    for (int i = 0; i < qls::k_lora_target_count; ++i) {
        auto* cb = check(QString::fromLatin1(qls::lora_target_short_name(qls::lora_target(i))),
                         d.lora.targets_has(qls::lora_target(i)));
        cb->setToolTip(tr("Put an adapter on every layer's %1").arg(qls::lora_target_name(qls::lora_target(i))));
        targetRow->addWidget(cb, i < 4 ? 0 : 1, i < 4 ? i : i - 4);
        m_targets.push_back(cb);
    }
    targetRow->setColumnStretch(4, 1);
    addField(lora, "lora.targets", tr("Target modules"), targetBox,
             tr("Which linear layers of each transformer block get an adapter: attention q, k, v, o and MLP gate, up, "
                "down. The QLoRA paper adapts all seven (it matters for quality); q,v only is the original LoRA "
                "choice and uses less memory. At least one."),
             [this](qls::train_config& c) {
                 c.lora.targets.clear();
                 for (int i = 0; i < int(m_targets.size()); ++i)
                     if (m_targets[size_t(i)]->isChecked()) c.lora.targets.push_back(qls::lora_target(i));
             });
    m_rslora = check(tr("rank-stabilised scale (alpha / √r)"), d.lora.use_rslora);
    addField(lora, "lora.rslora", tr("rsLoRA"), m_rslora,
             tr("Use scale = alpha / √r instead of alpha / r (Kalajdzievski 2023), which keeps high ranks learning; "
                "off in the QLoRA paper."),
             [this](qls::train_config& c) { c.lora.use_rslora = m_rslora->isChecked(); });
    m_scale = new QLabel(content);
    m_scale->setToolTip(tr("The factor the adapter's output is multiplied by, from alpha, rank and rsLoRA"));
    lora->addRow(tr("Scale"), m_scale);
    m_nf4 = check(tr("4-bit NormalFloat (NF4) frozen base"), d.quantize_nf4);
    addField(lora, "quantization.nf4", tr("Quantization"), m_nf4,
             tr("Store the frozen base model in 4-bit NF4, as QLoRA does (about 0.5 byte per weight). Off keeps the "
                "base in 16-bit, which needs about four times the memory."),
             [this](qls::train_config& c) { c.quantize_nf4 = m_nf4->isChecked(); });
    m_doubleQuant = check(tr("double quantization of the NF4 scales"), d.double_quant);
    addField(lora, "quantization.double_quant", tr("Double quant"), m_doubleQuant,
             tr("Quantize the per-block NF4 scales themselves to 8 bits (QLoRA's double quantization): saves about "
                "0.37 bit per weight, ~3 GB on a 65B model. Applies only with NF4."),
             [this](qls::train_config& c) { c.double_quant = m_doubleQuant->isChecked(); });

    // ---- optimizer ----------------------------------------------------------------------------------------------
    QFormLayout* opt = nullptr;
    grid->addWidget(group(tr("Optimizer and learning rate"), opt), 1, 0);
    m_optimizer = new QComboBox(content);
    m_optimizer->addItem(tr("Paged AdamW 8-bit"), int(qls::optimizer_kind::paged_adamw_8bit));
    m_optimizer->addItem(tr("Paged AdamW 32-bit"), int(qls::optimizer_kind::paged_adamw_32bit));
    m_optimizer->addItem(tr("AdamW 8-bit"), int(qls::optimizer_kind::adamw_8bit));
    m_optimizer->addItem(tr("AdamW 32-bit"), int(qls::optimizer_kind::adamw_32bit));
    m_optimizer->setCurrentIndex(m_optimizer->findData(int(d.optimizer)));
    addField(opt, "optimizer.kind", tr("Optimizer"), m_optimizer,
             tr("AdamW as bitsandbytes implements it. 8-bit keeps the two moment estimates in 8-bit blocks (2 bytes "
                "per parameter instead of 8). Paged states live in pages the VRAM budget can move to host memory "
                "when the card is short, instead of failing. QLoRA uses paged AdamW 8-bit."),
             [this](qls::train_config& c) { c.optimizer = qls::optimizer_kind(m_optimizer->currentData().toInt()); });
    m_lr = new QLineEdit(numberText(d.learning_rate), content);
    addField(opt, "optimizer.lr", tr("Learning rate"), m_lr,
             tr("Peak learning rate of AdamW, e.g. 2e-4 or 0.0002. The QLoRA paper uses 2e-4 for 7B/13B and 1e-4 for "
                "33B/65B. Must be positive."),
             [this](qls::train_config& c) {
                 bool ok = false;
                 const double v = QLocale::c().toDouble(m_lr->text().trimmed(), &ok);
                 if (!ok)
                     throw qls::error(qls::error_code::config,
                                      "optimizer.lr: \"" + m_lr->text().toStdString() + "\" is not a number",
                                      "write it like 2e-4 or 0.0002");
                 c.learning_rate = float(v);
             });
    m_schedule = new QComboBox(content);
    for (qls::lr_schedule s : {qls::lr_schedule::constant, qls::lr_schedule::linear, qls::lr_schedule::cosine})
        m_schedule->addItem(QString::fromLatin1(qls::lr_schedule_name(s)), int(s));
    m_schedule->setCurrentIndex(m_schedule->findData(int(d.schedule)));
    addField(opt, "optimizer.schedule", tr("Schedule"), m_schedule,
             tr("How the learning rate changes after warmup: constant (QLoRA paper), linear decay to 0, or cosine "
                "decay to 0 over the run (Hugging Face transformers semantics)."),
             [this](qls::train_config& c) { c.schedule = qls::lr_schedule(m_schedule->currentData().toInt()); });
    m_warmupRatio = dspin(0, 1, 3, 0.01, d.warmup_ratio);
    addField(opt, "optimizer.warmup_ratio", tr("Warmup ratio"), m_warmupRatio,
             tr("Fraction of the optimizer steps during which the learning rate rises linearly from 0 (used when "
                "warmup steps is \"from ratio\"). The QLoRA paper uses 0.03. Must be in [0, 1)."),
             [this](qls::train_config& c) { c.warmup_ratio = m_warmupRatio->value(); });
    m_warmupSteps = spin(-1, 1000000, d.warmup_steps);
    m_warmupSteps->setSpecialValueText(tr("from ratio"));
    addField(opt, "optimizer.warmup_steps", tr("Warmup steps"), m_warmupSteps,
             tr("A fixed number of warmup steps; overrides the ratio. Lowest value (\"from ratio\") uses the warmup "
                "ratio instead."),
             [this](qls::train_config& c) { c.warmup_steps = m_warmupSteps->value(); });
    m_weightDecay = dspin(0, 10, 4, 0.001, d.adamw.weight_decay);
    addField(opt, "optimizer.weight_decay", tr("Weight decay"), m_weightDecay,
             tr("Decoupled weight decay of AdamW on the adapter weights. The QLoRA paper uses 0. Must be ≥ 0."),
             [this](qls::train_config& c) { c.adamw.weight_decay = float(m_weightDecay->value()); });
    m_maxGradNorm = dspin(0, 1000, 3, 0.1, d.max_grad_norm);
    m_maxGradNorm->setSpecialValueText(tr("no clipping"));
    addField(opt, "optimizer.max_grad_norm", tr("Max grad norm"), m_maxGradNorm,
             tr("Clip the global gradient norm to this value before each update (torch clip_grad_norm_). The QLoRA "
                "paper uses 0.3; 0 turns clipping off."),
             [this](qls::train_config& c) { c.max_grad_norm = float(m_maxGradNorm->value()); });

    // ---- steps ----------------------------------------------------------------------------------------------------
    QFormLayout* steps = nullptr;
    grid->addWidget(group(tr("Batches and steps"), steps), 0, 1);
    m_seqLen = spin(0, 1 << 20, d.seq_len);
    addField(steps, "training.seq_len", tr("Sequence length"), m_seqLen,
             tr("Tokens per row (T). Longer examples are truncated to it; with packing, short ones share a row. Memory "
                "for activations grows with it. At least 2 and at most the model's context."),
             [this](qls::train_config& c) { c.seq_len = m_seqLen->value(); });
    m_microBatch = spin(0, 4096, d.micro_batch);
    addField(steps, "training.micro_batch", tr("Micro-batch"), m_microBatch,
             tr("Rows per forward/backward pass (B). Memory for activations grows with it; the QLoRA paper uses 1 with "
                "16 accumulation steps. At least 1."),
             [this](qls::train_config& c) { c.micro_batch = m_microBatch->value(); });
    m_gradAccum = spin(0, 100000, d.grad_accum);
    addField(steps, "training.grad_accum", tr("Accumulation"), m_gradAccum,
             tr("Micro-batches whose gradients are summed before each optimizer step; the effective batch is "
                "micro-batch × accumulation rows. Costs time, not memory. The QLoRA paper uses 16. At least 1."),
             [this](qls::train_config& c) { c.grad_accum = m_gradAccum->value(); });
    m_effectiveBatch = new QLabel(content);
    m_effectiveBatch->setToolTip(tr("Rows (sequences) per optimizer step: micro-batch × accumulation"));
    steps->addRow(tr("Effective batch"), m_effectiveBatch);
    m_dataCoverage = new QLabel(content);
    m_dataCoverage->setObjectName("dataCoverage");
    m_dataCoverage->setWordWrap(true);
    m_dataCoverage->setToolTip(
        tr("How much of the training data (Dataset page) the run's steps go through: rows of the "
           "sequence length per epoch (packed: the data's tokens ÷ the sequence length)"));
    steps->addRow(tr("Data"), m_dataCoverage);
    m_packing = check(tr("pack several examples per row"), d.packing);
    addField(steps, "data.packing", tr("Packing"), m_packing,
             tr("Fill each row of the sequence length with several short examples (attention stays within each "
                "example), so little compute is spent on padding. Off: one example per row, padded."),
             [this](qls::train_config& c) { c.packing = m_packing->isChecked(); });
    m_epochs = dspin(0, 1000, 2, 0.5, d.epochs);
    addField(steps, "training.epochs", tr("Epochs"), m_epochs,
             tr("Passes over the training data (fractions allowed) when max steps is 0. 1–3 is typical. Must be "
                "positive unless max steps is set."),
             [this](qls::train_config& c) {
                 c.epochs = m_epochs->value();
                 c.max_steps = m_maxSteps->value(); // epochs are required only when max steps is 0
             });
    m_maxSteps = spin(0, std::numeric_limits<int>::max(), int(d.max_steps));
    m_maxSteps->setSpecialValueText(tr("use epochs"));
    addField(steps, "training.max_steps", tr("Max steps"), m_maxSteps,
             tr("Stop after this many optimizer steps; wins over epochs when above 0."),
             [this](qls::train_config& c) { c.max_steps = m_maxSteps->value(); });
    m_evalEvery = spin(0, 1000000, d.eval_every);
    m_evalEvery->setSpecialValueText(tr("at the end"));
    addField(steps, "training.eval_every", tr("Evaluate every"), m_evalEvery,
             tr("Compute the validation loss every this many optimizer steps (when validation data exists); 0 only at "
                "the end."),
             [this](qls::train_config& c) { c.eval_every = m_evalEvery->value(); });
    m_evalBatches = spin(0, 1000000, d.eval_batches);
    m_evalBatches->setSpecialValueText(tr("all"));
    addField(steps, "training.eval_batches", tr("Eval batches"), m_evalBatches,
             tr("How many validation batches each evaluation uses; 0 uses the whole validation set."),
             [this](qls::train_config& c) { c.eval_batches = m_evalBatches->value(); });

    // ---- checkpointing and device ---------------------------------------------------------------------------------
    QFormLayout* dev = nullptr;
    grid->addWidget(group(tr("Checkpointing, memory and seed"), dev), 1, 1);
    m_gradientCheckpointing = check(tr("recompute in backward"), d.gradient_checkpointing);
    addField(dev, "training.gradient_checkpointing", tr("Gradient checkpointing"), m_gradientCheckpointing,
             tr("Keep only each layer's input and recompute the rest during backward: much less activation memory "
                "for about a third more compute. On in the QLoRA paper."),
             [this](qls::train_config& c) { c.gradient_checkpointing = m_gradientCheckpointing->isChecked(); });
    m_checkpointOffload = new QComboBox(content);
    m_checkpointOffload->addItem(tr("when needed"), QStringLiteral("auto"));
    m_checkpointOffload->addItem(tr("always"), QStringLiteral("on"));
    m_checkpointOffload->addItem(tr("never"), QStringLiteral("off"));
    m_checkpointOffload->setCurrentIndex(m_checkpointOffload->findData(QString::fromStdString(d.checkpoint_offload)));
    addField(dev, "device.checkpoint_offload", tr("Checkpoints in host RAM"), m_checkpointOffload,
             tr("GPU runs with gradient checkpointing: keep each layer's checkpoint in pinned host memory instead of "
                "the card, copied out in the forward and back one layer ahead in the backward (same results; the "
                "Monitor shows the traffic). \"When needed\" does it only when the run does not fit otherwise, which "
                "lets a 24 GB card train about twice the sequence length."),
             [this](qls::train_config& c) {
                 c.checkpoint_offload = m_checkpointOffload->currentData().toString().toStdString();
             });
    m_checkpointEvery = spin(0, 1000000, d.checkpoint_every);
    m_checkpointEvery->setSpecialValueText(tr("at the end"));
    addField(dev, "training.checkpoint_every", tr("Save every"), m_checkpointEvery,
             tr("Write a resumable checkpoint (adapter, optimizer state, data position) every this many optimizer "
                "steps; 0 saves only at the end and when stopped."),
             [this](qls::train_config& c) { c.checkpoint_every = m_checkpointEvery->value(); });
    m_keepCheckpoints = spin(0, 1000, d.keep_checkpoints);
    addField(dev, "training.keep_checkpoints", tr("Keep checkpoints"), m_keepCheckpoints,
             tr("How many of the newest checkpoints to keep on disk; older ones are deleted. At least 1."),
             [this](qls::train_config& c) { c.keep_checkpoints = m_keepCheckpoints->value(); });
    m_budget = dspin(0, 4096, 2, 1, d.budget_gib);
    m_budget->setSuffix(tr(" GiB"));
    m_budget->setSpecialValueText(tr("none (free memory)"));
    addField(dev, "device.budget_gib", tr("VRAM budget"), m_budget,
             tr("Device memory this run may use, e.g. 24 to behave like a 24 GB card on a bigger one. Paged optimizer "
                "states beyond it move to pinned host memory.\n\n0 = no budget of your own: 95% of the device's free "
                "memory when the run is planned; on the CPU backend no limit."),
             [this](qls::train_config& c) { c.budget_gib = m_budget->value(); });
    m_seed = new QLineEdit(QString::number(d.seed), content);
    addField(dev, "training.seed", tr("Seed"), m_seed,
             tr("Seeds adapter initialisation, dropout, data shuffling and the validation split: the same seed and "
                "settings give the same run. A whole number from 0 to 18446744073709551615."),
             [this](qls::train_config& c) {
                 bool ok = false;
                 const qulonglong v = m_seed->text().trimmed().toULongLong(&ok);
                 if (!ok)
                     throw qls::error(qls::error_code::config,
                                      "training.seed: \"" + m_seed->text().toStdString() + "\" is not a whole number",
                                      "use a number from 0 to 18446744073709551615, e.g. 42");
                 c.seed = v;
             });
    grid->setColumnStretch(0, 1);
    grid->setColumnStretch(1, 1);
    layout->addStretch(1);

    connect(savePreset, &QPushButton::clicked, this, &TrainingPage::savePresetInteractive);
    connect(loadPreset, &QPushButton::clicked, this, &TrainingPage::loadPresetInteractive);
    connect(defaults, &QPushButton::clicked, this, [this] {
        loadFrom(qls::train_config{});
        m_presetStatus->setText(tr("Defaults restored."));
    });
    for (QSpinBox* s : findChildren<QSpinBox*>()) connect(s, &QSpinBox::valueChanged, this, &TrainingPage::onEdited);
    for (QDoubleSpinBox* s : findChildren<QDoubleSpinBox*>())
        connect(s, &QDoubleSpinBox::valueChanged, this, &TrainingPage::onEdited);
    for (QCheckBox* c : findChildren<QCheckBox*>()) connect(c, &QCheckBox::toggled, this, &TrainingPage::onEdited);
    for (QComboBox* c : findChildren<QComboBox*>())
        connect(c, &QComboBox::currentIndexChanged, this, &TrainingPage::onEdited);
    for (QLineEdit* e : {m_lr, m_seed}) connect(e, &QLineEdit::textChanged, this, &TrainingPage::onEdited);
    connect(m_nf4, &QCheckBox::toggled, m_doubleQuant, &QWidget::setEnabled);
    updateDerived();
    validate();
}

TrainingPage::~TrainingPage() = default;

QWidget* TrainingPage::addField(QFormLayout* form, const QString& key, const QString& label, QWidget* input,
                                const QString& tooltip, std::function<void(qls::train_config&)> write) {
    auto* cell = new QWidget(input->parentWidget());
    auto* v = new QVBoxLayout(cell);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(2);
    input->setParent(cell);
    v->addWidget(input);
    auto* error = new QLabel(cell);
    error->setObjectName(QStringLiteral("error:") + key);
    error->setStyleSheet(QString::fromLatin1(k_errorStyle));
    error->setWordWrap(true);
    error->setTextInteractionFlags(Qt::TextSelectableByMouse);
    error->hide();
    v->addWidget(error);
    input->setToolTip(tooltip + tr("\n\nrun.json: %1").arg(key));
    // number and text fields keep a readable width instead of stretching across a maximised window
    if (qobject_cast<QAbstractSpinBox*>(input) || qobject_cast<QLineEdit*>(input) || qobject_cast<QComboBox*>(input))
        input->setMaximumWidth(fontMetrics().horizontalAdvance(QLatin1Char('0')) * 24);
    auto* name = new QLabel(label, cell->parentWidget());
    name->setToolTip(input->toolTip());
    name->setBuddy(input);
    form->addRow(name, cell);
    m_fields.push_back({key, label, input, error, std::move(write), QString()});
    return cell;
}

// One field on top of the reference config, through the engine's checks: the message (with its fix) or empty.
QString TrainingPage::checkField(const Field& f) const {
    qls::train_config c = referenceConfig();
    try {
        f.write(c);
        qls::validate_train_config(c);
        // the chosen model's and data's limits (qls::check_train_config_for_model / _for_data; train_checks.cpp):
        // the sequence length against the context and against the whole training data. The data's token count is
        // exact when it is below the sequence length the analysis truncated to (no example was cut); else the
        // analysis for the new length is awaited.
        if (f.input == m_seqLen) {
            if (m_model) qls::check_train_config_for_model(c, *m_model);
            if (m_dataExamples > 0 && dataTokensExact())
                qls::check_train_config_for_data(c, m_dataExamples, dataTokensAtLeast(c.seq_len));
        }
    } catch (const qls::error& e) {
        // the field's name is shown before the message already
        QString m = engineMessage(e);
        if (m.startsWith(f.key + QStringLiteral(": "))) m = m.mid(f.key.size() + 2);
        return inFieldNames(m);
    }
    return {};
}

bool TrainingPage::dataTokensExact() const { return m_dataSeqLen == 0 || m_dataTokens < m_dataSeqLen; }

// The data's tokens for the checks: exact, or (cut to an analysis's shorter sequence) at least one sequence of seqLen
// until the analysis for seqLen tells.
qint64 TrainingPage::dataTokensAtLeast(int seqLen) const {
    return dataTokensExact() ? m_dataTokens : std::max<qint64>(m_dataTokens, seqLen);
}

// The engine's notes on the whole page's settings against the model and the data, each on its field.
void TrainingPage::updateNotes() {
    for (Field& f : m_fields) f.note.clear();
    qls::train_config c = referenceConfig();
    applyTo(c);
    std::vector<qls::config_note> notes;
    try {
        if (m_model) notes = qls::check_train_config_for_model(c, *m_model);
    } catch (const qls::error&) {
        // a refusal is the Sequence length field's error (checkField)
    }
    try {
        const qls::train_data_fit fit = qls::check_train_config_for_data(c, m_dataExamples,
                                                                         dataTokensAtLeast(c.seq_len));
        notes.insert(notes.end(), fit.notes.begin(), fit.notes.end());
    } catch (const qls::error&) {
        // as above
    }
    for (const qls::config_note& n : notes)
        for (Field& f : m_fields)
            if (f.key == QString::fromStdString(n.key) && f.note.isEmpty())
                f.note = inFieldNames(
                    tr("%1 — fix: %2").arg(QString::fromStdString(n.text), QString::fromStdString(n.hint)));
}

// A field's label below its input: the error (red), else its note (amber), else hidden.
void TrainingPage::showFieldMessage(const Field& f, const QString& error) const {
    const bool isNote = error.isEmpty() && !f.note.isEmpty();
    f.error->setText(error.isEmpty() && !isNote ? QString() : tr("%1: %2").arg(f.label, isNote ? f.note : error));
    if (f.error->property("isNote").toBool() != isNote) { // a style sheet is costly to set on every key press
        f.error->setStyleSheet(QString::fromLatin1(isNote ? k_noteStyle : k_errorStyle));
        f.error->setProperty("isNote", isNote);
    }
    f.error->setVisible(!error.isEmpty() || isNote);
}

QString TrainingPage::fieldNote(const QString& key) const {
    for (const Field& f : m_fields)
        if (f.key == key) return f.note.isEmpty() ? QString() : tr("%1: %2").arg(f.label, f.note);
    return {};
}

void TrainingPage::setModelLimits(const std::optional<qls::model_config>& model) {
    m_model = model;
    updateNotes();
    validate();
    emit changed();
}

void TrainingPage::setTargetNames(const QStringList& names, const QString& family) {
    for (int i = 0; i < int(m_targets.size()); ++i) {
        const QString name = i < names.size() ? names[i]
                                              : QString::fromLatin1(qls::lora_target_name(qls::lora_target(i)));
        m_targets[size_t(i)]->setToolTip(
            family.isEmpty()
                ? tr("Put an adapter on every layer's %1").arg(name)
                : tr("Put an adapter on every layer's %1 (the %2 family's name for it)").arg(name, family));
    }
}

void TrainingPage::setRunActive(bool active) { m_runNote->setVisible(active); }
bool TrainingPage::runActiveNoteVisible() const { return !m_runNote->isHidden(); }

QString TrainingPage::inFieldNames(const QString& message) const {
    QString m = message;
    // the longest keys first, so no key is replaced inside a longer one
    std::vector<std::pair<QString, QString>> names;
    for (const Field& f : m_fields) names.emplace_back(f.key, f.label);
    names.emplace_back(QStringLiteral("runs_dir"), tr("Runs folder (Runs page)"));
    names.emplace_back(QStringLiteral("data.train"), tr("Training file (Dataset page)"));
    names.emplace_back(QStringLiteral("data.validation"), tr("Validation file (Dataset page)"));
    std::sort(names.begin(), names.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (const auto& [key, label] : names) m.replace(key, label);
    // the engine also names a setting by its bare key ("when max_steps is 0")
    for (const Field& f : m_fields) {
        const QString bare = f.key.mid(f.key.indexOf('.') + 1);
        if (bare.contains('_'))
            m.replace(QRegularExpression(QStringLiteral("\\b%1\\b").arg(QRegularExpression::escape(bare))), f.label);
    }
    // the fix is on this page, not in the command-line documentation
    m.replace(QRegularExpression(QStringLiteral("\\s*\\(?(see|as described in) README\\.md\\)?")), QString());
    m.replace(QStringLiteral("README.md"), tr("the field's tooltip"));
    return m;
}

bool TrainingPage::validate(QString* reason) const {
    QString first;
    for (const Field& f : m_fields) {
        const QString msg = checkField(f);
        showFieldMessage(f, msg);
        if (first.isEmpty() && !msg.isEmpty()) first = f.error->text();
    }
    if (first.isEmpty()) {
        // Every field passes alone; the whole page together must pass too (cross-field rules).
        qls::train_config c = referenceConfig();
        try {
            applyTo(c);
            qls::validate_train_config(c);
        } catch (const qls::error& e) {
            first = inFieldNames(engineMessage(e));
        }
    }
    if (reason) *reason = first;
    return first.isEmpty();
}

QString TrainingPage::fieldError(const QString& key) const {
    for (const Field& f : m_fields)
        if (f.key == key)
            return f.error->isHidden() || f.error->property("isNote").toBool() ? QString() : f.error->text();
    return {};
}

void TrainingPage::applyTo(qls::train_config& c) const {
    for (const Field& f : m_fields) {
        try {
            f.write(c);
        } catch (const qls::error&) {
            // unparsable text (learning rate, seed): leave the config's value; validate() reports it
        }
    }
}

void TrainingPage::loadFrom(const qls::train_config& c) {
    m_loading = true;
    m_rank->setValue(c.lora.rank);
    m_alpha->setValue(c.lora.alpha);
    m_dropout->setValue(c.lora.dropout);
    for (int i = 0; i < int(m_targets.size()); ++i)
        m_targets[size_t(i)]->setChecked(c.lora.targets_has(qls::lora_target(i)));
    m_rslora->setChecked(c.lora.use_rslora);
    m_nf4->setChecked(c.quantize_nf4);
    m_doubleQuant->setChecked(c.double_quant);
    m_optimizer->setCurrentIndex(m_optimizer->findData(int(c.optimizer)));
    m_lr->setText(numberText(c.learning_rate));
    m_schedule->setCurrentIndex(m_schedule->findData(int(c.schedule)));
    m_warmupRatio->setValue(c.warmup_ratio);
    m_warmupSteps->setValue(c.warmup_steps);
    m_weightDecay->setValue(c.adamw.weight_decay);
    m_maxGradNorm->setValue(c.max_grad_norm);
    m_seqLen->setValue(c.seq_len);
    m_microBatch->setValue(c.micro_batch);
    m_gradAccum->setValue(c.grad_accum);
    m_packing->setChecked(c.packing);
    m_epochs->setValue(c.epochs);
    m_maxSteps->setValue(int(std::min<int64_t>(c.max_steps, std::numeric_limits<int>::max())));
    m_evalEvery->setValue(c.eval_every);
    m_evalBatches->setValue(c.eval_batches);
    m_gradientCheckpointing->setChecked(c.gradient_checkpointing);
    m_checkpointOffload->setCurrentIndex(std::max(0, m_checkpointOffload->findData(QString::fromStdString(c.checkpoint_offload))));
    m_checkpointEvery->setValue(c.checkpoint_every);
    m_keepCheckpoints->setValue(c.keep_checkpoints);
    m_budget->setValue(c.budget_gib);
    m_seed->setText(QString::number(qulonglong(c.seed)));
    m_loading = false;
    onEdited();
}

void TrainingPage::onEdited() {
    if (m_loading) return;
    updateDerived();
    validate();
    emit changed();
}

void TrainingPage::updateDerived() {
    qls::lora_config l;
    l.rank = m_rank->value();
    l.alpha = float(m_alpha->value());
    l.use_rslora = m_rslora->isChecked();
    m_scale->setText(
        l.rank > 0
            ? tr("%1 (%2)").arg(double(l.scale()), 0, 'g', 4).arg(l.use_rslora ? tr("alpha / √r") : tr("alpha / r"))
            : tr("—"));
    m_effectiveBatch->setText(tr("%1 rows × %2 tokens per optimizer step")
                                  .arg(m_microBatch->value() * m_gradAccum->value())
                                  .arg(m_seqLen->value()));
    m_doubleQuant->setEnabled(m_nf4->isChecked());
    m_warmupRatio->setEnabled(m_warmupSteps->value() < 0);
    m_epochs->setEnabled(m_maxSteps->value() == 0);

    // the data against the steps: the engine's figures (qls::check_train_config_for_data) and its notes
    updateNotes();
    if (m_dataExamples <= 0) {
        m_dataCoverage->setText(tr("— (choose the training data on the Dataset page)"));
        return;
    }
    qls::train_config c = referenceConfig();
    applyTo(c);
    QString text;
    bool warn = false;
    try {
        const qls::train_data_fit fit = qls::check_train_config_for_data(c, m_dataExamples,
                                                                         dataTokensAtLeast(c.seq_len));
        QString note; // a note about the data itself (a step larger than it, steps over it more than once)
        for (const qls::config_note& n : fit.notes)
            if (note.isEmpty() && (n.key == "training.micro_batch" || n.key == "training.max_steps"))
                note = inFieldNames(tr("%1 — %2").arg(QString::fromStdString(n.text), QString::fromStdString(n.hint)));
        if (!note.isEmpty()) {
            text = note;
            warn = fit.rows_per_step > fit.rows_per_epoch || fit.epochs > 20;
        } else if (c.max_steps > 0) {
            text = tr("%1 rows an epoch; %2 steps × %3 rows cover %4 epochs")
                       .arg(fit.rows_per_epoch)
                       .arg(fit.steps)
                       .arg(fit.rows_per_step)
                       .arg(fit.epochs, 0, 'f', fit.epochs < 10 ? 2 : 0);
        } else {
            text = tr("%1 rows an epoch; %2 epochs take about %3 steps")
                       .arg(fit.rows_per_epoch)
                       .arg(c.epochs, 0, 'g', 3)
                       .arg(fit.steps);
        }
    } catch (const qls::error& e) {
        text = inFieldNames(engineMessage(e));
        warn = true;
    }
    m_dataCoverage->setText(
        warn ? QStringLiteral("<span style='%1'>%2</span>").arg(QString::fromLatin1(k_noteStyle), text.toHtmlEscaped())
             : text.toHtmlEscaped());
}

void TrainingPage::setDatasetSize(qint64 examples, qint64 tokens, int analysedSeqLen) {
    m_dataExamples = examples;
    m_dataTokens = tokens;
    m_dataSeqLen = analysedSeqLen;
    updateDerived();
    validate(); // the sequence length against the data
    emit changed();
}

QString TrainingPage::dataCoverageText() const { return m_dataCoverage->text(); }

// ---- presets -----------------------------------------------------------------------------------------------------

bool TrainingPage::savePreset(const QString& path, QString* error) const {
    auto fail = [&](const QString& msg) {
        m_presetStatus->setText(QStringLiteral("<span style='%1'>%2</span>").arg(k_errorStyle, msg.toHtmlEscaped()));
        if (error) *error = msg;
        return false;
    };
    QString reason;
    if (!validate(&reason)) return fail(tr("Not saved: %1").arg(reason));
    qls::train_config c = referenceConfig();
    applyTo(c);
    // The engine writes run.json; the preset keeps the sections and keys of the page's fields.
    const json full = json::parse(qls::train_config_to_json(c));
    json preset;
    for (const char* section : k_presetSections) preset[section] = full.at(section);
    json opt;
    for (const char* k : k_presetOptimizerKeys) opt[k] = full.at("optimizer").at(k);
    preset["optimizer"] = opt;
    preset["data"] = {{"packing", c.packing}};
    preset["device"] = {{"budget_gib", c.budget_gib}};
    const QByteArray text = QByteArray::fromStdString(preset.dump(2) + "\n");

    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(text) != text.size() || !f.commit())
        return fail(tr("Could not write %1: %2").arg(path, f.errorString()));
    m_presetStatus->setText(tr("Saved %1").arg(QFileInfo(path).fileName()).toHtmlEscaped());
    return true;
}

bool TrainingPage::loadPreset(const QString& path, QString* error) {
    auto fail = [&](const QString& msg) {
        m_presetStatus->setText(QStringLiteral("<span style='%1'>%2</span>").arg(k_errorStyle, msg.toHtmlEscaped()));
        if (error) *error = msg;
        return false;
    };
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return fail(tr("Could not open %1: %2").arg(path, f.errorString()));
    const std::string name = QFileInfo(path).fileName().toStdString();
    json in;
    try {
        in = json::parse(f.readAll().toStdString());
    } catch (const json::exception& e) {
        return fail(tr("%1: not valid JSON: %2").arg(QString::fromStdString(name), QString::fromUtf8(e.what())));
    }
    if (!in.is_object()) return fail(tr("%1: the top level must be a JSON object").arg(QString::fromStdString(name)));

    // Lay the preset over the page's current settings as a complete run.json and let the engine's parser check it
    // (types, unknown keys, ranges). Sections merge key by key, so a preset may set only some keys; the page's fields
    // it does not name keep their values. A whole run.json loads too: only the page's fields are taken from it.
    // model and data.train are required by the parser but belong to other pages: they get the preset's folder and
    // its own path (a model must be a folder or a .gguf file), which are never read, and are not taken over.
    qls::train_config current = referenceConfig();
    applyTo(current);
    json merged = json::parse(qls::train_config_to_json(current));
    for (auto it = in.begin(); it != in.end(); ++it) {
        if (it.value().is_object() && merged.contains(it.key()) && merged[it.key()].is_object())
            for (auto k = it.value().begin(); k != it.value().end(); ++k) merged[it.key()][k.key()] = k.value();
        else merged[it.key()] = it.value();
    }
    merged["model"] = QFileInfo(path).absolutePath().toStdString();
    merged["data"]["train"] = path.toStdString();
    merged["data"]["validation"] = "";
    merged["data"]["validation_fraction"] = 0.0;
    qls::train_config parsed;
    try {
        parsed = qls::parse_train_config(merged.dump(), name, QFileInfo(path).absolutePath().toStdString());
    } catch (const qls::error& e) {
        return fail(inFieldNames(engineMessage(e)));
    }
    loadFrom(parsed);
    m_presetStatus->setText(tr("Loaded %1").arg(QFileInfo(path).fileName()).toHtmlEscaped());
    return true;
}

void TrainingPage::savePresetInteractive() {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save training preset"), QString(),
                                                      tr("JSON presets (*.json)"));
    if (!path.isEmpty()) savePreset(path.endsWith(".json") ? path : path + ".json");
}

void TrainingPage::loadPresetInteractive() {
    const QString path = QFileDialog::getOpenFileName(this, tr("Load training preset"), QString(),
                                                      tr("JSON presets or run configurations (*.json)"));
    if (!path.isEmpty()) loadPreset(path);
}
