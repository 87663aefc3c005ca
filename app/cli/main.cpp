// qlora — the command-line front end: parses a subcommand and its flags, calls the engine, prints results.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--version") == 0) { std::printf("qlora %s\n", QLS_VERSION); return 0; }
    std::fprintf(stderr, "usage: qlora <command>\n");
    return 2;
}
