#include "config/config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <tuple>
#include <sstream>
#include <variant>

#include <toml++/toml.h>

#include "common/error.hpp"
#include "crisd_build.hpp"

namespace crisd::config {
namespace {

using StringRef = std::function<std::string&(Config&)>;
using IntRef = std::function<std::int64_t&(Config&)>;
using BoolRef = std::function<bool&(Config&)>;
using StringListRef = std::function<std::vector<std::string>&(Config&)>;
using Field = std::variant<StringRef, IntRef, BoolRef, StringListRef>;

struct Key {
    std::string table;  // "crisd.api"
    std::string name;   // "listen"
    std::string description;
    Field field;

    std::string full_name() const { return table + "." + name; }
};

// The one list of scalar keys. Runtime handlers ([crisd.runtime.runtimes.NAME])
// are a map of tables and are described by handler_keys() below.
const std::vector<Key>& scalar_keys() {
    static const std::vector<Key> keys = {
        {"crisd", "root", "Persistent state: image store, pod and container records.",
         StringRef([](Config& c) -> std::string& { return c.root; })},
        {"crisd", "runroot", "Runtime state that does not survive a reboot.",
         StringRef([](Config& c) -> std::string& { return c.runroot; })},
        {"crisd", "log_level", "One of trace, debug, info, warn, error, critical, off.",
         StringRef([](Config& c) -> std::string& { return c.log_level; })},
        {"crisd.api", "listen",
         "CRI socket path when crisd is not socket-activated (crisd.socket has its own ListenStream).",
         StringRef([](Config& c) -> std::string& { return c.api.listen; })},
        {"crisd.api", "grpc_max_send_msg_size", "Largest gRPC message crisd sends, in bytes.",
         IntRef([](Config& c) -> std::int64_t& { return c.api.grpc_max_send_msg_size; })},
        {"crisd.api", "grpc_max_recv_msg_size", "Largest gRPC message crisd accepts, in bytes.",
         IntRef([](Config& c) -> std::int64_t& { return c.api.grpc_max_recv_msg_size; })},
        {"crisd.api", "shutdown_timeout",
         "Seconds that requests in flight may take to finish after SIGTERM.",
         IntRef([](Config& c) -> std::int64_t& { return c.api.shutdown_timeout; })},
        {"crisd.api", "stream_address",
         "IP address the streaming server (exec, attach, port-forward) listens on. Keep it on "
         "localhost unless TLS is on: the kubelet reaches it on the node.",
         StringRef([](Config& c) -> std::string& { return c.api.stream_address; })},
        {"crisd.api", "stream_port", "Port of the streaming server; \"0\" picks a free port at each start.",
         StringRef([](Config& c) -> std::string& { return c.api.stream_port; })},
        {"crisd.api", "stream_enable_tls", "Serve the streaming server over HTTPS with stream_tls_cert and stream_tls_key.",
         BoolRef([](Config& c) -> bool& { return c.api.stream_enable_tls; })},
        {"crisd.api", "stream_tls_cert", "PEM certificate (chain) of the streaming server, when TLS is on.",
         StringRef([](Config& c) -> std::string& { return c.api.stream_tls_cert; })},
        {"crisd.api", "stream_tls_key", "PEM private key of the streaming server, when TLS is on.",
         StringRef([](Config& c) -> std::string& { return c.api.stream_tls_key; })},
        {"crisd.api", "stream_idle_timeout",
         "Seconds a streaming session may go without traffic either way before it is closed; 0: no limit.",
         IntRef([](Config& c) -> std::int64_t& { return c.api.stream_idle_timeout; })},
        {"crisd.api", "stream_token_ttl",
         "Seconds the URL returned by Exec, Attach or PortForward stays valid (it works once).",
         IntRef([](Config& c) -> std::int64_t& { return c.api.stream_token_ttl; })},
        {"crisd.image", "global_auth_file",
         "Registry credentials file (containers-auth.json format); empty: $REGISTRY_AUTH_FILE, "
         "${XDG_RUNTIME_DIR}/containers/auth.json, /run/containers/0/auth.json, ~/.docker/config.json.",
         StringRef([](Config& c) -> std::string& { return c.image.global_auth_file; })},
        {"crisd.image", "registries_conf",
         "containers-registries.conf(5) v2 file (and its .d drop-in directory), read at every pull.",
         StringRef([](Config& c) -> std::string& { return c.image.registries_conf; })},
        {"crisd.image", "signature_policy",
         "containers-policy.json(5) file: \"reject\" refuses a pull, signature requirements are refused "
         "(not verified yet); a missing file allows every image.",
         StringRef([](Config& c) -> std::string& { return c.image.signature_policy; })},
        {"crisd.image", "pull_progress_timeout",
         "Seconds a pull may go without receiving a byte before it fails; 0 disables the check.",
         IntRef([](Config& c) -> std::int64_t& { return c.image.pull_progress_timeout; })},
        {"crisd.image", "registry_connect_timeout", "Seconds to wait for a connection to a registry.",
         IntRef([](Config& c) -> std::int64_t& { return c.image.registry_connect_timeout; })},
        {"crisd.image", "max_parallel_downloads", "Layers of one pull fetched at the same time (1 to 64).",
         IntRef([](Config& c) -> std::int64_t& { return c.image.max_parallel_downloads; })},
        {"crisd.runtime", "default_runtime",
         "Runtime handler used when the CRI request names none; must be a table in runtimes.",
         StringRef([](Config& c) -> std::string& { return c.runtime.default_runtime; })},
        {"crisd.runtime", "pod_shm_size",
         "Size in bytes of the /dev/shm tmpfs of a pod that does not use the host IPC namespace.",
         IntRef([](Config& c) -> std::int64_t& { return c.runtime.pod_shm_size; })},
        {"crisd.runtime", "seccomp_profile",
         "The RuntimeDefault seccomp profile: a containers-common (Docker format) or OCI JSON file, "
         "read again when it changes. A container gets no seccomp unless it asks for a profile.",
         StringRef([](Config& c) -> std::string& { return c.runtime.seccomp_profile; })},
        {"crisd.network", "network_dir",
         "Directory of CNI network configs; the first valid .conflist/.conf/.json in lexical "
         "order is used.",
         StringRef([](Config& c) -> std::string& { return c.network.network_dir; })},
        {"crisd.network", "plugin_dirs", "Directories searched for CNI plugin binaries, in order.",
         StringListRef(
             [](Config& c) -> std::vector<std::string>& { return c.network.plugin_dirs; })},
        {"crisd.network", "cni_default_network",
         "Name of the CNI network to use; empty uses the first valid config.",
         StringRef([](Config& c) -> std::string& { return c.network.cni_default_network; })},
        {"crisd.network", "plugin_timeout", "Seconds a CNI plugin call may take before it is killed.",
         IntRef([](Config& c) -> std::int64_t& { return c.network.plugin_timeout; })},
    };
    return keys;
}

struct HandlerKey {
    std::string name;
    std::string description;
    std::string RuntimeHandler::*member;
};

const std::vector<HandlerKey>& handler_keys() {
    static const std::vector<HandlerKey> keys = {
        {"runtime_path", "Path of the OCI runtime binary; empty looks the handler name up in PATH.",
         &RuntimeHandler::runtime_path},
        {"runtime_root", "State directory passed to the runtime as --root.",
         &RuntimeHandler::runtime_root},
        {"runtime_type", "Only \"oci\" is supported.", &RuntimeHandler::runtime_type},
    };
    return keys;
}

const char* const kHandlersTable = "crisd.runtime.runtimes";

Error config_error(const std::string& origin, const std::string& message) {
    return Error(Code::InvalidArgument, origin + ": " + message);
}

const char* type_name(const toml::node& n) {
    switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
    }
}

std::string get_string(const toml::node& n, const std::string& key, const std::string& origin) {
    if (!n.is_string())
        throw config_error(origin, key + ": expected a string, got " + type_name(n));
    return *n.value<std::string>();
}

bool get_bool(const toml::node& n, const std::string& key, const std::string& origin) {
    if (!n.is_boolean())
        throw config_error(origin, key + ": expected a boolean, got " + type_name(n));
    return *n.value<bool>();
}

std::vector<std::string> get_string_list(const toml::node& n, const std::string& key,
                                         const std::string& origin) {
    if (!n.is_array())
        throw config_error(origin, key + ": expected an array of strings, got " + type_name(n));
    std::vector<std::string> out;
    size_t i = 0;
    for (const auto& item : *n.as_array()) {
        if (!item.is_string())
            throw config_error(origin, key + "[" + std::to_string(i) +
                                           "]: expected a string, got " + type_name(item));
        out.push_back(*item.value<std::string>());
        ++i;
    }
    return out;
}

std::int64_t get_int(const toml::node& n, const std::string& key, const std::string& origin) {
    if (!n.is_integer())
        throw config_error(origin, key + ": expected an integer, got " + type_name(n));
    return *n.value<std::int64_t>();
}

const toml::table& as_table(const toml::node& n, const std::string& key, const std::string& origin) {
    if (!n.is_table())
        throw config_error(origin, key + ": expected a table, got " + type_name(n));
    return *n.as_table();
}

void apply_handler(RuntimeHandler& h, const toml::table& t, const std::string& prefix,
                   const std::string& origin) {
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        auto it = std::find_if(handler_keys().begin(), handler_keys().end(),
                               [&](const HandlerKey& hk) { return hk.name == key; });
        if (it == handler_keys().end())
            throw config_error(origin, "unknown key " + prefix + "." + key);
        h.*(it->member) = get_string(v, prefix + "." + key, origin);
    }
}

void apply_table(Config& cfg, const toml::table& t, const std::string& path,
                 const std::string& origin) {
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        const std::string full = path.empty() ? key : path + "." + key;
        if (full == kHandlersTable) {
            for (auto&& [hk, hv] : as_table(v, full, origin)) {
                const std::string hname(hk.str());
                const std::string hpath = full + "." + hname;
                apply_handler(cfg.runtime.runtimes[hname], as_table(hv, hpath, origin), hpath,
                              origin);
            }
            continue;
        }
        auto it = std::find_if(scalar_keys().begin(), scalar_keys().end(),
                               [&](const Key& sk) { return sk.full_name() == full; });
        if (it != scalar_keys().end()) {
            std::visit(
                [&](auto&& ref) {
                    using R = std::decay_t<decltype(ref)>;
                    if constexpr (std::is_same_v<R, StringRef>)
                        ref(cfg) = get_string(v, full, origin);
                    else if constexpr (std::is_same_v<R, IntRef>)
                        ref(cfg) = get_int(v, full, origin);
                    else if constexpr (std::is_same_v<R, BoolRef>)
                        ref(cfg) = get_bool(v, full, origin);
                    else
                        ref(cfg) = get_string_list(v, full, origin);
                },
                it->field);
            continue;
        }
        // A table that holds known keys (crisd, crisd.api, ...) is walked into.
        const bool known_table =
            std::any_of(scalar_keys().begin(), scalar_keys().end(),
                        [&](const Key& sk) {
                            return sk.table == full || sk.table.starts_with(full + ".");
                        }) ||
            std::string(kHandlersTable).starts_with(full + ".");
        if (!known_table) throw config_error(origin, "unknown key " + full);
        apply_table(cfg, as_table(v, full, origin), full, origin);
    }
}

std::string quote(const std::string& s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                out += buf;
            } else {
                out += static_cast<char>(ch);
            }
        }
    }
    return out + "\"";
}

// TOML bare keys are [A-Za-z0-9_-]+; anything else is quoted.
std::string toml_key(const std::string& k) {
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '-';
    });
    return bare ? k : quote(k);
}

std::string value_text(const Key& key, const Config& cfg) {
    auto& c = const_cast<Config&>(cfg);
    return std::visit(
        [&](auto&& ref) -> std::string {
            using R = std::decay_t<decltype(ref)>;
            if constexpr (std::is_same_v<R, StringRef>) {
                return quote(ref(c));
            } else if constexpr (std::is_same_v<R, IntRef>) {
                return std::to_string(ref(c));
            } else if constexpr (std::is_same_v<R, BoolRef>) {
                return ref(c) ? "true" : "false";
            } else {
                std::string out = "[";
                for (const auto& item : ref(c)) out += (out.size() > 1 ? ", " : "") + quote(item);
                return out + "]";
            }
        },
        key.field);
}

bool is_absolute(const std::string& p) { return !p.empty() && p[0] == '/'; }

// RuntimeClass handler names are DNS labels.
bool valid_handler_name(const std::string& n) {
    if (n.empty() || n.size() > 63) return false;
    if (!std::isalnum(static_cast<unsigned char>(n.front())) ||
        !std::isalnum(static_cast<unsigned char>(n.back())))
        return false;
    return std::all_of(n.begin(), n.end(), [](unsigned char c) {
        return (std::islower(c) || std::isdigit(c) || c == '-');
    });
}

}  // namespace

Config defaults() {
    Config c;
    c.root = "/var/lib/crisd";
    c.runroot = "/run/crisd";
    c.log_level = "info";
    c.api.listen = "/run/crisd/crisd.sock";
    c.api.grpc_max_send_msg_size = 80 * 1024 * 1024;
    c.api.grpc_max_recv_msg_size = 80 * 1024 * 1024;
    c.api.shutdown_timeout = 10;
    c.api.stream_address = "127.0.0.1";
    c.api.stream_port = "0";
    c.api.stream_enable_tls = false;
    c.api.stream_idle_timeout = 0;
    c.api.stream_token_ttl = 60;
    c.image.global_auth_file = "";
    c.image.registries_conf = "/etc/containers/registries.conf";
    c.image.signature_policy = "/etc/containers/policy.json";
    c.image.pull_progress_timeout = 60;
    c.image.registry_connect_timeout = 30;
    c.image.max_parallel_downloads = 3;
    c.runtime.default_runtime = "runc";
    c.runtime.pod_shm_size = 64 * 1024 * 1024;
    c.runtime.seccomp_profile = "/usr/share/containers/seccomp.json";
    c.runtime.runtimes["runc"] = RuntimeHandler{"", "/run/runc", "oci"};
    c.runtime.runtimes["crun"] = RuntimeHandler{"", "/run/crun", "oci"};
    c.network.network_dir = "/etc/cni/net.d";
    c.network.plugin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
    c.network.plugin_timeout = 60;
    return c;
}

Sources default_sources() {
    const std::string dir = std::string(CRISD_SYSCONFDIR) + "/crisd";
    return Sources{dir + "/crisd.conf", dir + "/crisd.conf.d", false};
}

void apply_toml(Config& cfg, const std::string& text, const std::string& origin) {
    toml::table doc;
    try {
        doc = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        std::ostringstream msg;
        msg << "line " << e.source().begin.line << ", column " << e.source().begin.column
            << ": " << e.description();
        throw config_error(origin, msg.str());
    }
    apply_table(cfg, doc, "", origin);
}

void validate(const Config& cfg, const std::string& origin) {
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn",
                                                 "error", "critical", "off"};
    if (!levels.count(cfg.log_level))
        throw config_error(origin, "crisd.log_level: " + quote(cfg.log_level) +
                                       " is not one of trace, debug, info, warn, error, "
                                       "critical, off");
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"crisd.root", cfg.root},
                                     {"crisd.runroot", cfg.runroot},
                                     {"crisd.api.listen", cfg.api.listen}}) {
        if (!is_absolute(value))
            throw config_error(origin, key + ": " + quote(value) + " is not an absolute path");
    }
    for (const auto& [key, value] :
         {std::pair<std::string, std::int64_t>{"crisd.api.grpc_max_send_msg_size",
                                               cfg.api.grpc_max_send_msg_size},
          {"crisd.api.grpc_max_recv_msg_size", cfg.api.grpc_max_recv_msg_size}}) {
        if (value < 4096 || value > INT32_MAX)
            throw config_error(origin, key + ": " + std::to_string(value) +
                                           " is outside 4096.." + std::to_string(INT32_MAX));
    }
    if (cfg.runtime.pod_shm_size < 1024 * 1024 || cfg.runtime.pod_shm_size > (std::int64_t{1} << 40))
        throw config_error(origin, "crisd.runtime.pod_shm_size: " +
                                       std::to_string(cfg.runtime.pod_shm_size) +
                                       " is outside 1048576..1099511627776 bytes");
    if (cfg.api.shutdown_timeout < 0 || cfg.api.shutdown_timeout > 3600)
        throw config_error(origin, "crisd.api.shutdown_timeout: " +
                                       std::to_string(cfg.api.shutdown_timeout) +
                                       " is outside 0..3600 seconds");
    if (!is_absolute(cfg.runtime.seccomp_profile))
        throw config_error(origin, "crisd.runtime.seccomp_profile: " + quote(cfg.runtime.seccomp_profile) +
                                       " is not an absolute path");
    {
        const auto& p = cfg.api.stream_port;
        const bool digits = !p.empty() && p.size() <= 5 &&
                            std::all_of(p.begin(), p.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (!digits || std::stol(p) > 65535)
            throw config_error(origin, "crisd.api.stream_port: " + quote(p) + " is not a port number (0..65535)");
    }
    if (cfg.api.stream_address.empty())
        throw config_error(origin, "crisd.api.stream_address: must be an IP address");
    if (cfg.api.stream_enable_tls) {
        for (const auto& [key, value] :
             {std::pair<std::string, std::string>{"crisd.api.stream_tls_cert", cfg.api.stream_tls_cert},
              {"crisd.api.stream_tls_key", cfg.api.stream_tls_key}})
            if (!is_absolute(value))
                throw config_error(origin, key + ": " + quote(value) +
                                               " is not an absolute path (needed with stream_enable_tls)");
    }
    if (cfg.api.stream_idle_timeout < 0 || cfg.api.stream_idle_timeout > 86400)
        throw config_error(origin, "crisd.api.stream_idle_timeout: " + std::to_string(cfg.api.stream_idle_timeout) +
                                       " is outside 0..86400 seconds");
    if (cfg.api.stream_token_ttl < 1 || cfg.api.stream_token_ttl > 3600)
        throw config_error(origin, "crisd.api.stream_token_ttl: " + std::to_string(cfg.api.stream_token_ttl) +
                                       " is outside 1..3600 seconds");
    if (!is_absolute(cfg.image.registries_conf))
        throw config_error(origin, "crisd.image.registries_conf: " + quote(cfg.image.registries_conf) +
                                       " is not an absolute path");
    if (!is_absolute(cfg.image.signature_policy))
        throw config_error(origin, "crisd.image.signature_policy: " + quote(cfg.image.signature_policy) +
                                       " is not an absolute path");
    if (!cfg.image.global_auth_file.empty() && !is_absolute(cfg.image.global_auth_file))
        throw config_error(origin, "crisd.image.global_auth_file: " + quote(cfg.image.global_auth_file) +
                                       " is not an absolute path");
    for (const auto& [key, value, lo, hi] :
         {std::tuple<std::string, std::int64_t, std::int64_t, std::int64_t>{
              "crisd.image.pull_progress_timeout", cfg.image.pull_progress_timeout, 0, 86400},
          {"crisd.image.registry_connect_timeout", cfg.image.registry_connect_timeout, 1, 3600},
          {"crisd.image.max_parallel_downloads", cfg.image.max_parallel_downloads, 1, 64}}) {
        if (value < lo || value > hi)
            throw config_error(origin, key + ": " + std::to_string(value) + " is outside " + std::to_string(lo) +
                                           ".." + std::to_string(hi));
    }
    for (const auto& [name, h] : cfg.runtime.runtimes) {
        const std::string prefix = std::string(kHandlersTable) + "." + name;
        if (!valid_handler_name(name))
            throw config_error(origin, prefix + ": handler name " + quote(name) +
                                           " is not a DNS label (lower-case letters, digits, '-')");
        if (h.runtime_type != "oci")
            throw config_error(origin, prefix + ".runtime_type: " + quote(h.runtime_type) +
                                           " is not supported (only \"oci\")");
        if (!h.runtime_path.empty() && !is_absolute(h.runtime_path))
            throw config_error(origin, prefix + ".runtime_path: " + quote(h.runtime_path) +
                                           " is not an absolute path");
        if (!is_absolute(h.runtime_root))
            throw config_error(origin, prefix + ".runtime_root: " + quote(h.runtime_root) +
                                           " is not an absolute path");
    }
    if (!is_absolute(cfg.network.network_dir))
        throw config_error(origin, "crisd.network.network_dir: " + quote(cfg.network.network_dir) +
                                       " is not an absolute path");
    for (const auto& dir : cfg.network.plugin_dirs)
        if (!is_absolute(dir))
            throw config_error(origin, "crisd.network.plugin_dirs: " + quote(dir) +
                                           " is not an absolute path");
    if (cfg.network.plugin_timeout < 1 || cfg.network.plugin_timeout > 3600)
        throw config_error(origin, "crisd.network.plugin_timeout: " +
                                       std::to_string(cfg.network.plugin_timeout) +
                                       " is outside 1..3600 seconds");
    if (!cfg.runtime.runtimes.count(cfg.runtime.default_runtime))
        throw config_error(origin, "crisd.runtime.default_runtime: " +
                                       quote(cfg.runtime.default_runtime) +
                                       " has no [crisd.runtime.runtimes." +
                                       cfg.runtime.default_runtime + "] table");
}

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_errno("reading " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw_errno("reading " + path);
    return ss.str();
}

}  // namespace

Config load(const Sources& sources) {
    namespace fs = std::filesystem;
    Config cfg = defaults();
    std::vector<std::string> applied;
    std::error_code ec;
    if (!sources.file.empty()) {
        if (fs::exists(sources.file, ec)) {
            apply_toml(cfg, read_file(sources.file), sources.file);
            applied.push_back(sources.file);
        } else if (sources.file_required) {
            throw Error(Code::NotFound, "config file " + sources.file + " does not exist");
        }
    }
    if (!sources.dropin_dir.empty() && fs::is_directory(sources.dropin_dir, ec)) {
        std::vector<std::string> dropins;
        for (const auto& entry : fs::directory_iterator(sources.dropin_dir, ec)) {
            const auto& p = entry.path();
            if (p.extension() == ".conf" && !p.filename().string().starts_with(".") &&
                entry.is_regular_file(ec))
                dropins.push_back(p.string());
        }
        if (ec) throw sys_error("listing " + sources.dropin_dir, ec.value());
        std::sort(dropins.begin(), dropins.end());
        for (const auto& d : dropins) {
            apply_toml(cfg, read_file(d), d);
            applied.push_back(d);
        }
    }
    std::string origin = applied.empty() ? std::string("built-in defaults") : applied.front();
    for (size_t i = 1; i < applied.size(); ++i) origin += ", " + applied[i];
    validate(cfg, origin);
    return cfg;
}

std::string to_toml(const Config& cfg, bool commented) {
    std::ostringstream out;
    const char* k = commented ? "#" : "";
    if (commented)
        out << "# crisd configuration. Every key is shown commented out with its built-in\n"
               "# default; uncomment a key to change it, or better, put changes in a drop-in\n"
               "# file in crisd.conf.d/ (applied in lexical order). `crisd config` prints the\n"
               "# effective configuration.\n\n";
    else
        out << "# crisd " << CRISD_VERSION << " effective configuration\n";
    std::string current;
    for (const auto& key : scalar_keys()) {
        if (key.table != current) {
            out << (current.empty() ? "" : "\n") << k << "[" << key.table << "]\n";
            current = key.table;
        }
        out << "# " << key.description << "\n"
            << k << key.name << " = " << value_text(key, cfg) << "\n";
    }
    for (const auto& [name, h] : cfg.runtime.runtimes) {
        out << "\n" << k << "[" << kHandlersTable << "." << toml_key(name) << "]\n";
        for (const auto& hk : handler_keys())
            out << "# " << hk.description << "\n"
                << k << hk.name << " = " << quote(h.*(hk.member)) << "\n";
    }
    return out.str();
}

std::vector<KeyDoc> key_docs() {
    const Config d = defaults();
    std::vector<KeyDoc> docs;
    for (const auto& key : scalar_keys()) {
        static const char* const type_names[] = {"string", "integer", "boolean", "string list"};
        docs.push_back({key.full_name(), type_names[key.field.index()], value_text(key, d),
                        key.description});
    }
    for (const auto& [name, h] : d.runtime.runtimes)
        for (const auto& hk : handler_keys())
            docs.push_back({std::string(kHandlersTable) + "." + name + "." + hk.name, "string",
                            quote(h.*(hk.member)), hk.description});
    return docs;
}

}  // namespace crisd::config
