#include "cli/cli.h"

int main(int argc, char** argv) { return dt::run_cli(argc, argv); }
