// MainWindow — the studio's frame: a page list on the left, the pages on the right, persisted window state.
#pragma once

#include <QMainWindow>

class QListWidget;
class QStackedWidget;
class ModelPage;
class PlaygroundPage;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);
    ModelPage* modelPage() const { return m_modelPage; }
    PlaygroundPage* playgroundPage() const { return m_playgroundPage; }
    void showPage(int index);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    QListWidget* m_nav;
    QStackedWidget* m_stack;
    ModelPage* m_modelPage;
    PlaygroundPage* m_playgroundPage;
};
