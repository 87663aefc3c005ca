// StudioStyle — the studio's one look: Fusion with a light or dark palette that follows the system, and a clearly visible keyboard focus ring.
#pragma once

#include <QProxyStyle>

class QApplication;

// Draws a 2-pixel ring in the palette's highlight colour around the focused button, field (line edit, spin box, combo box) or list (Fusion's own
// focus hint is a faint 1-pixel tint), over Fusion's drawing.
class StudioStyle : public QProxyStyle {
    Q_OBJECT
public:
    StudioStyle();
    void drawPrimitive(PrimitiveElement element, const QStyleOption* option, QPainter* painter,
                       const QWidget* widget = nullptr) const override;
    void drawComplexControl(ComplexControl control, const QStyleOptionComplex* option, QPainter* painter,
                            const QWidget* widget = nullptr) const override;
};

namespace studio_style {

enum class Scheme { FollowSystem, Light, Dark };

// Installs StudioStyle and the palette: Light or Dark, or the system's (the platform theme's palette, which Qt
// replaces when the desktop's theme changes; QLS_THEME=light|dark overrides it).
void apply(QApplication* app, Scheme scheme = Scheme::FollowSystem);
// The palettes (Fusion's colour roles; the dark one after the Fusion dark scheme most Qt applications use).
QPalette lightPalette();
QPalette darkPalette();
bool isDark(const QPalette& palette);

} // namespace studio_style
