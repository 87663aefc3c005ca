// MemoryChart — the Monitor's device memory: the run's plan categories stacked, the measured use, the budget and card lines.
#pragma once

#include "monitorchart.h"

#include <QStringList>

class MemoryChart : public MonitorChart {
    Q_OBJECT
public:
    enum Series { Measured, Budget, Card };
    explicit MemoryChart(const QVector<qls::step_stats>* history, QWidget* parent = nullptr);

    // The budget line (the run's plan's budget_bytes); 0 = none. The page rebuilds the series after a change.
    void setBudgetBytes(quint64 bytes) { m_budgetBytes = bytes; }
    quint64 budgetBytes() const { return m_budgetBytes; }

    // A new step about to be appended: takes the plan's categories from the first step that has them; true when the
    // unit had to grow (the page then rebuilds every series in the new unit).
    bool noteStep(const qls::step_stats& s);
    // A whole run about to be drawn: the unit and the categories from every step.
    void noteHistory(const QVector<qls::step_stats>& history);
    // A new run: no categories, back to KiB.
    void reset();

    void append(const qls::step_stats& s) override;
    void clearData() override;
    QString titleFor(const QVector<qls::step_stats>& history) const override;
    QString describe(const qls::step_stats& s) const override;
    QString idleTitle() const override { return tr("Memory"); }

    QList<QCPGraph*> categoryGraphs() const { return m_categoryGraphs; }
    QStringList categories() const { return m_categories; }

protected:
    // The y axis fits the stacked bands and the measured line; the budget and card lines widen it only when they are
    // near the data (within 1.5×), so a far budget does not squash the bands (its value stays in the legend and hover).
    void fitExtra() override;
    // as many legend columns as fit the chart's width (entries are never cut)
    void fitLegend() override;

private:
    void buildCategories(const qls::step_stats& s);
    double scale() const;
    QString unit() const;

    quint64 m_budgetBytes = 0;
    QList<QCPGraph*> m_categoryGraphs; // cumulative stack, bottom first
    QStringList m_categories;          // plan category machine names, in stack order
    int m_unitPower = 1;               // 1 KiB, 2 MiB, 3 GiB
    bool m_anyCard = false;
};
