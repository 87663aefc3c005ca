// MonitorChart — one Monitor chart: a QCustomPlot with a title, named series, hover values, zoom/pan that stops following
// the run, fitting to the data; each chart of the Monitor page is a small subclass (anchors §7.8 habit 15).
#pragma once

#include "qls/telemetry.h"

#include <QList>
#include <QString>
#include <QVector>
#include <QWidget>

class QCPGraph;
class QCPItemText;
class QCPItemTracer;
class QCPTextElement;
class QCustomPlot;

class MonitorChart : public QWidget {
    Q_OBJECT
public:
    // The series colours every chart draws from.
    static QColor paletteColor(int i);

    // history: the page's steps, read when hovering and when fitting (the page outlives its charts' use of it).
    MonitorChart(const QString& title, const QVector<qls::step_stats>* history, QWidget* parent = nullptr);

    QCustomPlot* plot() const { return m_plot; }
    QCPGraph* graph(int i) const { return m_graphs.value(i); }
    QString title() const;
    void setTitle(const QString& text);
    bool follows() const { return m_follow; }
    void setFollow(bool on) { m_follow = on; }

    // One step's values onto the series (the page calls it for each new step, and for every step when rebuilding).
    virtual void append(const qls::step_stats& s) = 0;
    // Empties the series (their layout stays).
    virtual void clearData();
    // The title for the run so far (history non-empty), and the hover text's lines after the step line.
    virtual QString titleFor(const QVector<qls::step_stats>& history) const = 0;
    virtual QString describe(const qls::step_stats& s) const = 0;
    virtual QString idleTitle() const = 0;

    // When following: x spans the run, every y axis its data (zero-based unless the chart says otherwise).
    void fitToData();
    // A queued replot (drawn once when the event loop comes back).
    void replot();
    double lastReplotMs() const;
    bool savePng(const QString& file) const;
    void setPlotObjectName(const QString& name);
    // The hover read-out's text ("" when the mouse is not over the data).
    QString hoverText() const;
    // Back to following the run with both axes fitted (double-click does the same).
    void resetView();

signals:
    // The user asked to follow the run again (double-click): the page redraws.
    void followRequested();
    void contextMenuRequested(const QPoint& globalPos);
    // The plot was drawn (QCustomPlot::afterReplot).
    void replotted();

protected:
    QCPGraph* addGraph(const QString& name, const QColor& color, bool rightAxis = false);
    // The y-range rule for a linear axis: false = pad around the data (the loss), true = start at zero.
    virtual bool zeroBased() const { return true; }
    // After the axes are fitted (the paging chart's page axis).
    virtual void fitExtra() {}
    // A legend below the chart (the memory chart's) re-wraps to the chart's width so no entry is cut.
    virtual void fitLegend() {}
    // The graph the hover crosshair follows.
    virtual QCPGraph* tracedGraph() const { return graph(0); }
    const QVector<qls::step_stats>& history() const { return *m_history; }

private:
    bool eventFilter(QObject* watched, QEvent* event) override;
    void changeEvent(QEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;
    void fitTitle();
    void showTooltip(const QPoint& pos);
    const qls::step_stats* statsAt(double step) const;

    const QVector<qls::step_stats>* m_history;
    QCustomPlot* m_plot;
    QCPTextElement* m_title;
    QCPItemTracer* m_tracer;
    QCPItemText* m_readout;
    QString m_fullTitle;
    QList<QCPGraph*> m_graphs;
    bool m_follow = true;
};
