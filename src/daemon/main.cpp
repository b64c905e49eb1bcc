// crisd: the CRI runtime daemon. Parses the command line; DaemonManager does the rest.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "config/config.hpp"
#include "crisd_build.hpp"
#include "daemon/daemon.hpp"
#include "log/log.hpp"

int main(int argc, char** argv) {
    using namespace crisd;
    CLI::App app{"crisd: a systemd-native Kubernetes container runtime (CRI server)", "crisd"};
    app.set_version_flag("--version", std::string("crisd version ") + CRISD_VERSION);

    const auto sources = config::default_sources();
    std::string config_file = sources.file;
    std::string config_dir;
    std::string log_level, listen, root, runroot;
    auto* config_opt =
        app.add_option("-c,--config", config_file, "Main config file (TOML)")->capture_default_str();
    app.add_option("--config-dir", config_dir,
                   "Drop-in directory, *.conf in lexical order (default: <config>.d)");
    app.add_option("--log-level", log_level,
                   "trace, debug, info, warn, error, critical or off (overrides crisd.log_level)");
    app.add_option("--listen", listen, "CRI socket path when not socket-activated (crisd.api.listen)");
    app.add_option("--root", root, "Persistent state directory (crisd.root)");
    app.add_option("--runroot", runroot, "Runtime state directory (crisd.runroot)");
    auto* config_cmd = app.add_subcommand("config", "Print the effective configuration as TOML");
    bool commented = false;
    config_cmd->add_flag("--commented", commented,
                         "Print every key commented out (the form of the installed crisd.conf)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        config::Sources src{config_file, config_dir.empty() ? config_file + ".d" : config_dir,
                            config_opt->count() > 0};
        config::Config cfg = config::load(src);
        if (!log_level.empty()) cfg.log_level = log_level;
        if (!listen.empty()) cfg.api.listen = listen;
        if (!root.empty()) cfg.root = root;
        if (!runroot.empty()) cfg.runroot = runroot;
        config::validate(cfg, "command line");

        if (config_cmd->parsed()) {
            std::cout << config::to_toml(cfg, commented);
            return 0;
        }
        log::setup(cfg.log_level, log::detect_target());
        daemon::block_signals();
        return daemon::DaemonManager(std::move(cfg)).run();
    } catch (const Error& e) {
        std::fprintf(stderr, "crisd: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crisd: %s\n", e.what());
        return 1;
    }
}
