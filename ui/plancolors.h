// One colour per memory-plan category, shared by the Plan page's bar and the Monitor's memory chart so both read alike.
#pragma once

#include "qls/memory_plan.h"

#include <QColor>
#include <QString>

#include <array>

// Indexed by qls::plan_category (cuda_context last, grey: on the card but outside the budget). Tableau 10 colours.
inline QColor planCategoryColor(int category) {
    static const std::array<QColor, qls::plan_category_count> colours = {
        QColor("#4e79a7"), QColor("#a0cbe8"), QColor("#f28e2b"), QColor("#ffbe7d"), QColor("#59a14f"),
        QColor("#8cd17d"), QColor("#e15759"), QColor("#b07aa1"), QColor("#76b7b2"), QColor("#bab0ac"),
    };
    return category >= 0 && category < qls::plan_category_count ? colours[size_t(category)] : QColor(Qt::gray);
}

// The category's index for its machine name ("quantized_weights", ...); -1 when unknown.
inline int planCategoryIndex(const QString& machineName) {
    for (int i = 0; i < qls::plan_category_count; ++i)
        if (machineName == QLatin1String(qls::plan_category_name(qls::plan_category(i)))) return i;
    return -1;
}
