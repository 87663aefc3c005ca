// themePlot — gives a QCustomPlot the window's palette (background, axes, grid, text, legend), so charts follow the light or dark scheme.
#pragma once

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QPalette>

inline void themePlot(QCustomPlot* plot, const QPalette& pal) {
    const QColor base = pal.color(QPalette::Base), text = pal.color(QPalette::Text);
    QColor grid = text;
    grid.setAlpha(40);
    QColor sub = text;
    sub.setAlpha(18);
    plot->setBackground(base);
    for (QCPAxisRect* rect : plot->axisRects()) {
        rect->setBackground(base);
        for (QCPAxis* a : rect->axes()) {
            a->setBasePen(QPen(text, 1));
            a->setTickPen(QPen(text, 1));
            a->setSubTickPen(QPen(text, 1));
            a->setTickLabelColor(text);
            a->setLabelColor(text);
            a->grid()->setPen(QPen(grid, 1, Qt::DotLine));
            a->grid()->setSubGridPen(QPen(sub, 1, Qt::DotLine));
            a->grid()->setZeroLinePen(Qt::NoPen);
        }
    }
    QColor legendBack = base;
    legendBack.setAlpha(210);
    plot->legend->setBrush(legendBack);
    plot->legend->setTextColor(text);
    plot->legend->setBorderPen(Qt::NoPen);
    for (int i = 0; i < plot->plotLayout()->elementCount(); ++i)
        if (auto* t = qobject_cast<QCPTextElement*>(plot->plotLayout()->elementAt(i))) t->setTextColor(text);
    plot->replot(QCustomPlot::rpQueuedReplot);
}
