#include "network/cni.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"

extern char** environ;

namespace crisd::network::cni {
namespace {

using json = nlohmann::json;

Error invalid(const std::string& file, const std::string& why) {
    return Error(Code::InvalidArgument, (file.empty() ? std::string("CNI config") : file) + ": " + why);
}

struct Output {
    int status = 0;
    std::string out, err;
    bool timed_out = false;
};

void make_pipe(UniqueFd& r, UniqueFd& w) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("creating a pipe");
    r.reset(fds[0]);
    w.reset(fds[1]);
}

// Runs `path` with `env`, writes `input` to its stdin and collects stdout and
// stderr, killing it when `timeout` passes.
Output run(const std::string& path, const std::vector<std::string>& env, const std::string& input,
           std::chrono::milliseconds timeout) {
    UniqueFd in_r, in_w, out_r, out_w, err_r, err_w;
    // stdin is a socket so that writing to a plugin that has exited gives
    // EPIPE (MSG_NOSIGNAL), not a SIGPIPE that would kill crisd.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw_errno("creating a socket pair");
    in_r.reset(sv[0]);
    in_w.reset(sv[1]);
    make_pipe(out_r, out_w);
    make_pipe(err_r, err_w);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
    posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);  // crisd blocks SIGTERM; plugins must not inherit that
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<char*> argv{const_cast<char*>(path.c_str()), nullptr};
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    pid_t pid = -1;
    const int rc = posix_spawn(&pid, path.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw_sys("running CNI plugin " + path, rc);
    in_r.reset();
    out_w.reset();
    err_w.reset();

    Output o;
    size_t written = 0;
    if (input.empty()) in_w.reset();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out_r || err_r) {
        std::vector<pollfd> fds;
        if (in_w) fds.push_back({in_w.get(), POLLOUT, 0});
        if (out_r) fds.push_back({out_r.get(), POLLIN, 0});
        if (err_r) fds.push_back({err_r.get(), POLLIN, 0});
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0) {
            o.timed_out = true;
            ::kill(pid, SIGKILL);
            break;
        }
        const int n = ::poll(fds.data(), fds.size(), static_cast<int>(left));
        if (n < 0 && errno != EINTR) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            throw_errno("waiting for CNI plugin " + path);
        }
        for (const auto& p : fds) {
            if (!p.revents) continue;
            if (in_w && p.fd == in_w.get()) {
                const ssize_t w = ::send(in_w.get(), input.data() + written, input.size() - written,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) written += static_cast<size_t>(w);
                if (w < 0 && errno != EAGAIN && errno != EINTR) in_w.reset();  // plugin closed stdin
                if (written == input.size()) in_w.reset();
                continue;
            }
            UniqueFd& src = (out_r && p.fd == out_r.get()) ? out_r : err_r;
            std::string& dst = (&src == &out_r) ? o.out : o.err;
            char buf[8192];
            const ssize_t r = ::read(p.fd, buf, sizeof buf);
            if (r > 0)
                dst.append(buf, static_cast<size_t>(r));
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                src.reset();
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    o.status = status;
    return o;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

bool supported_version(const std::string& v) {
    static const std::set<std::string> versions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
    return versions.count(v) > 0;
}

bool version_has_check(const std::string& v) {
    return v == "0.4.0" || v.rfind("1.", 0) == 0;
}

ConfigList ConfigList::from_json(const json& raw, const std::string& file) {
    if (!raw.is_object()) throw invalid(file, "not a JSON object");
    ConfigList l;
    l.file = file;
    l.raw = raw;
    if (!raw.contains("name") || !raw["name"].is_string() || raw["name"].get<std::string>().empty())
        throw invalid(file, "no network name");
    l.name = raw["name"].get<std::string>();
    if (!raw.contains("cniVersion") || !raw["cniVersion"].is_string())
        throw invalid(file, "no cniVersion");
    l.cni_version = raw["cniVersion"].get<std::string>();
    if (!supported_version(l.cni_version))
        throw invalid(file, "cniVersion " + l.cni_version +
                                " is not supported (0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)");
    if (raw.contains("disableCheck")) {
        if (!raw["disableCheck"].is_boolean()) throw invalid(file, "disableCheck is not a boolean");
        l.disable_check = raw["disableCheck"].get<bool>();
    }
    if (!raw.contains("plugins") || !raw["plugins"].is_array() || raw["plugins"].empty())
        throw invalid(file, "no plugins");
    for (const auto& p : raw["plugins"]) {
        if (!p.is_object() || !p.contains("type") || !p["type"].is_string() ||
            p["type"].get<std::string>().empty())
            throw invalid(file, "a plugin without a type");
        const auto type = p["type"].get<std::string>();
        if (type.find('/') != std::string::npos || type == "." || type == "..")
            throw invalid(file, "plugin type \"" + type + "\" is not a plain name");
    }
    l.plugins = raw["plugins"];
    return l;
}

ConfigList ConfigList::parse(const std::string& text, const std::string& file, bool single) {
    json raw;
    try {
        raw = json::parse(text);
    } catch (const json::parse_error& e) {
        throw invalid(file, std::string("invalid JSON: ") + e.what());
    }
    if (single) {
        if (!raw.is_object()) throw invalid(file, "not a JSON object");
        if (raw.contains("plugins"))
            throw invalid(file, "a .conf file holds one plugin; use .conflist for a list");
        json list = {{"name", raw.value("name", "")},
                     {"cniVersion", raw.value("cniVersion", "")},
                     {"plugins", json::array({raw})}};
        return from_json(list, file);
    }
    return from_json(raw, file);
}

std::vector<ConfigList> load_dir(const std::string& dir, std::vector<std::string>& problems) {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const auto ext = entry.path().extension().string();
        if ((ext == ".conflist" || ext == ".conf" || ext == ".json") && entry.is_regular_file(ec))
            files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    std::vector<ConfigList> lists;
    for (const auto& f : files) {
        try {
            const bool single = fs::path(f).extension() != ".conflist";
            lists.push_back(ConfigList::parse(read_file(f), f, single));
        } catch (const Error& e) {
            problems.push_back(e.what());
        }
    }
    return lists;
}

std::string find_plugin(const std::string& type, const std::vector<std::string>& dirs) {
    for (const auto& d : dirs) {
        const std::string p = d + "/" + type;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return "";
}

json plugin_stdin(const ConfigList& list, const json& plugin, const Attachment& att,
                  const json& prev_result) {
    json conf = plugin;
    conf["name"] = list.name;
    conf["cniVersion"] = list.cni_version;
    // runtimeConfig carries only what the plugin declares in its capabilities.
    json runtime_config = json::object();
    if (plugin.contains("capabilities") && plugin["capabilities"].is_object()) {
        for (const auto& [cap, enabled] : plugin["capabilities"].items()) {
            if (enabled.is_boolean() && enabled.get<bool>() && att.capability_args.contains(cap))
                runtime_config[cap] = att.capability_args[cap];
        }
    }
    if (!runtime_config.empty()) conf["runtimeConfig"] = runtime_config;
    if (!prev_result.is_null()) conf["prevResult"] = prev_result;
    return conf;
}

json invoke(const ConfigList& list, const json& plugin, const Attachment& att,
            const Invocation& inv, const json& prev_result) {
    const auto type = plugin["type"].get<std::string>();
    const std::string path = find_plugin(type, inv.plugin_dirs);
    std::string dirs;
    for (const auto& d : inv.plugin_dirs) dirs += (dirs.empty() ? "" : ":") + d;
    if (path.empty())
        throw Error(Code::FailedPrecondition, "CNI plugin \"" + type + "\" of network \"" +
                                                  list.name + "\" not found in " + dirs);
    std::string args;
    for (const auto& [k, v] : att.args) args += (args.empty() ? "" : ";") + k + "=" + v;
    std::vector<std::string> env = {
        "CNI_COMMAND=" + inv.command, "CNI_CONTAINERID=" + att.container_id,
        "CNI_NETNS=" + att.netns,     "CNI_IFNAME=" + att.ifname,
        "CNI_ARGS=" + args,           "CNI_PATH=" + dirs,
        // Plugins run iptables and ip; give them a sane PATH.
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    };
    const std::string input = plugin_stdin(list, plugin, att, prev_result).dump();
    const std::string what = "CNI plugin " + type + " " + inv.command + " (network " + list.name + ")";
    const Output o = run(path, env, input, inv.timeout);
    if (o.timed_out)
        throw Error(Code::DeadlineExceeded,
                    what + " did not finish within " + std::to_string(inv.timeout.count() / 1000) + " s");
    if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0) {
        std::string msg = trim(o.err);
        try {
            const auto err = json::parse(o.out);
            msg = err.value("msg", std::string());
            if (err.contains("details") && err["details"].is_string() &&
                !err["details"].get<std::string>().empty())
                msg += ": " + err["details"].get<std::string>();
            if (err.contains("code")) msg += " (code " + err["code"].dump() + ")";
        } catch (const json::exception&) {
            if (msg.empty()) msg = trim(o.out);
        }
        const std::string how = WIFEXITED(o.status)
                                    ? "exited " + std::to_string(WEXITSTATUS(o.status))
                                    : "was killed by signal " + std::to_string(WTERMSIG(o.status));
        throw Error(Code::Unknown, what + " failed (" + how + "): " + msg);
    }
    if (inv.command != "ADD" || trim(o.out).empty()) return nullptr;
    try {
        return json::parse(o.out);
    } catch (const json::exception& e) {
        throw Error(Code::Unknown, what + " printed a result that is not JSON: " + e.what());
    }
}

std::vector<std::string> result_ips(const json& result) {
    std::vector<std::string> ips;
    if (!result.is_object() || !result.contains("ips") || !result["ips"].is_array()) return ips;
    for (const auto& ip : result["ips"]) {
        if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
        auto addr = ip["address"].get<std::string>();
        if (const auto slash = addr.find('/'); slash != std::string::npos) addr.resize(slash);
        ips.push_back(addr);
    }
    return ips;
}

}  // namespace crisd::network::cni
