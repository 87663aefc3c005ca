// StudioStyle: the Fusion proxy with the focus ring, the light and dark palettes, and the system-theme follower.
#include "studiostyle.h"

#include <QApplication>
#include <QPainter>
#include <QStyleFactory>
#include <QStyleOption>
#include <QWidget>

StudioStyle::StudioStyle() : QProxyStyle(QStyleFactory::create(QStringLiteral("Fusion"))) {}

namespace {

void drawRing(const QStyleOption* option, QPainter* painter, qreal radius) {
    painter->save();
    painter->setRenderHint(QPainter::Antialiasing, true);
    QColor c = option->palette.color(QPalette::Highlight);
    painter->setPen(QPen(c, 2));
    painter->setBrush(Qt::NoBrush);
    painter->drawRoundedRect(QRectF(option->rect).adjusted(1, 1, -1, -1), radius, radius);
    painter->restore();
}

bool focused(const QStyleOption* option) {
    return (option->state & QStyle::State_HasFocus) && (option->state & QStyle::State_Enabled);
}

} // namespace

void StudioStyle::drawPrimitive(PrimitiveElement element, const QStyleOption* option, QPainter* painter,
                                const QWidget* widget) const {
    QProxyStyle::drawPrimitive(element, option, painter, widget);
    switch (element) {
    case PE_PanelButtonCommand:
    case PE_FrameLineEdit:
        if (focused(option)) drawRing(option, painter, 3);
        break;
    case PE_FrameFocusRect: // check boxes, radio buttons, list items: Fusion's dotted hint, made visible
        drawRing(option, painter, 2);
        break;
    default: break;
    }
}

void StudioStyle::drawComplexControl(ComplexControl control, const QStyleOptionComplex* option, QPainter* painter,
                                     const QWidget* widget) const {
    QProxyStyle::drawComplexControl(control, option, painter, widget);
    // spin boxes and combo boxes draw their frame as part of the complex control: the ring goes around the whole
    // control, over Fusion's frame (the spin box's inner line edit and the combo's label sit inside it). A spin box
    // is focused through its line edit (its focus proxy), so the widget's own focus counts too.
    if (control != CC_SpinBox && control != CC_ComboBox) return;
    if (focused(option) || (widget && widget->hasFocus() && widget->isEnabled())) drawRing(option, painter, 3);
}

namespace studio_style {

QPalette lightPalette() { return QStyleFactory::create(QStringLiteral("Fusion"))->standardPalette(); }

QPalette darkPalette() {
    QPalette p;
    const QColor window(0x2b, 0x2d, 0x30), base(0x1e, 0x1f, 0x22), text(0xdf, 0xe1, 0xe5), mid(0x3c, 0x3f, 0x41);
    p.setColor(QPalette::Window, window);
    p.setColor(QPalette::WindowText, text);
    p.setColor(QPalette::Base, base);
    p.setColor(QPalette::AlternateBase, QColor(0x26, 0x28, 0x2b));
    p.setColor(QPalette::ToolTipBase, QColor(0x3a, 0x3d, 0x41));
    p.setColor(QPalette::ToolTipText, text);
    p.setColor(QPalette::PlaceholderText, QColor(0x8c, 0x8f, 0x94));
    p.setColor(QPalette::Text, text);
    p.setColor(QPalette::Button, mid);
    p.setColor(QPalette::ButtonText, text);
    p.setColor(QPalette::BrightText, QColor(0xff, 0x6b, 0x6b));
    p.setColor(QPalette::Light, QColor(0x4a, 0x4d, 0x50));
    p.setColor(QPalette::Midlight, QColor(0x43, 0x46, 0x49));
    p.setColor(QPalette::Mid, QColor(0x32, 0x34, 0x37));
    p.setColor(QPalette::Dark, QColor(0x1a, 0x1b, 0x1d));
    p.setColor(QPalette::Shadow, Qt::black);
    p.setColor(QPalette::Highlight, QColor(0x3d, 0x8e, 0xe6));
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::Link, QColor(0x6c, 0xb6, 0xff));
    p.setColor(QPalette::LinkVisited, QColor(0xb3, 0x9d, 0xdb));
    for (QPalette::ColorRole r : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
        p.setColor(QPalette::Disabled, r, QColor(0x7a, 0x7d, 0x82));
    return p;
}

bool isDark(const QPalette& palette) { return palette.color(QPalette::Window).lightness() < 128; }

void apply(QApplication* app, Scheme scheme) {
    app->setStyle(new StudioStyle);
    const QByteArray forced = qgetenv("QLS_THEME").toLower();
    if (scheme == Scheme::FollowSystem && forced == "dark") scheme = Scheme::Dark;
    if (scheme == Scheme::FollowSystem && forced == "light") scheme = Scheme::Light;
    switch (scheme) {
    case Scheme::Light: QApplication::setPalette(lightPalette()); break;
    case Scheme::Dark: QApplication::setPalette(darkPalette()); break;
    case Scheme::FollowSystem:
        // no palette of our own: Qt takes the platform theme's (light or dark, as the desktop is) and replaces it
        // when the desktop's theme changes; the pages' own colours come from palette roles and follow it
        break;
    }
}

} // namespace studio_style
