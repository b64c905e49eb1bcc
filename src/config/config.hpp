// crisd's configuration: built-in defaults, /etc/crisd/crisd.conf (TOML) and
// drop-ins from crisd.conf.d/*.conf in lexical order. Keys follow crio.conf's
// names where the concept is the same ([crisd.api] listen, [crisd.runtime]
// default_runtime, [crisd.runtime.runtimes.NAME] runtime_path, ...).
//
// One table (keys()) describes every key: it drives parsing, `crisd config`
// output and the documentation check, so they cannot drift apart.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace crisd::config {

struct RuntimeHandler {
    std::string runtime_path;  // empty: look the handler's name up in PATH
    std::string runtime_root;  // --root passed to the OCI runtime
    std::string runtime_type = "oci";
};

struct Config {
    std::string root;
    std::string runroot;
    std::string log_level;
    struct Api {
        std::string listen;
        std::int64_t grpc_max_send_msg_size = 0;
        std::int64_t grpc_max_recv_msg_size = 0;
        std::int64_t shutdown_timeout = 0;  // seconds to drain requests on SIGTERM
        // The streaming server (exec, attach, port-forward).
        std::string stream_address;
        std::string stream_port;  // "0": an ephemeral port
        bool stream_enable_tls = false;
        std::string stream_tls_cert;
        std::string stream_tls_key;
        std::int64_t stream_idle_timeout = 0;  // seconds; 0: none
        std::int64_t stream_token_ttl = 0;     // seconds a streaming URL stays valid
    } api;
    struct Image {
        std::string global_auth_file;
        std::string registries_conf;
        std::string signature_policy;
        std::int64_t pull_progress_timeout = 0;  // seconds without progress before a pull fails
        std::int64_t registry_connect_timeout = 0;  // seconds
        std::int64_t max_parallel_downloads = 0;
    } image;
    struct Runtime {
        std::string default_runtime;
        std::map<std::string, RuntimeHandler> runtimes;
        std::int64_t pod_shm_size = 0;  // bytes of a pod's /dev/shm tmpfs
        std::string seccomp_profile;    // the RuntimeDefault seccomp profile (containers format)
    } runtime;
    struct Network {
        std::string network_dir;
        std::vector<std::string> plugin_dirs;
        std::string cni_default_network;
        std::int64_t plugin_timeout = 0;  // seconds
    } network;
};

// Every key with its built-in default; crisd runs with no file at all.
Config defaults();

struct Sources {
    std::string file;        // main file; may be missing unless file_required
    std::string dropin_dir;  // *.conf applied in lexical order; may be missing
    bool file_required = false;
};

// The default sources: /etc/crisd/crisd.conf and /etc/crisd/crisd.conf.d.
Sources default_sources();

// Defaults, then the main file, then each drop-in. Throws crisd::Error
// (InvalidArgument) naming the file and the key for an unknown key, a wrong
// type, a parse error or an invalid value.
Config load(const Sources& sources);

// Applies one TOML document on top of cfg. `origin` names it in errors.
void apply_toml(Config& cfg, const std::string& text, const std::string& origin);

// Checks values that each key's type alone cannot (paths, levels, handlers).
void validate(const Config& cfg, const std::string& origin);

// The effective config as TOML, every key with a comment; loads back to cfg.
// `commented` prints every key commented out (the installed crisd.conf: it
// documents the defaults without pinning them).
std::string to_toml(const Config& cfg, bool commented = false);

// Documentation of the keys: "crisd.api.listen" etc., with the default as TOML.
struct KeyDoc {
    std::string name;
    std::string type;
    std::string default_value;
    std::string description;
};
std::vector<KeyDoc> key_docs();

}  // namespace crisd::config
