#include "args.hpp"

#include <charconv>
#include <functional>
#include <map>

#include "common/error.hpp"

namespace crisd::conmon {

namespace {

int64_t to_int(const std::string& option, const std::string& value) {
    int64_t out = 0;
    const auto r = std::from_chars(value.data(), value.data() + value.size(), out);
    if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size())
        throw Error(Code::InvalidArgument, option + ": not an integer: '" + value + "'");
    return out;
}

bool is_hex_id(const std::string& id) {
    if (id.size() != 64) return false;
    for (char c : id)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

const char* usage() {
    return "usage: crisd-conmon --id ID --bundle DIR --runtime PATH --exit-dir DIR --socket-dir DIR\n"
           "         [--name NAME] [--pod-name NAME] [--pod-namespace NS] [--runtime-arg ARG]...\n"
           "         [--log-path FILE] [--log-size-max BYTES] [--log-line-max BYTES] [--no-journal]\n"
           "         [--terminal] [--stdin] [--stdin-once] [--oom-score-adj N]\n"
           "         [--sync-fd FD] [--start-fd FD] [--foreground]\n";
}

Args parse_args(const std::vector<std::string>& argv) {
    Args a;
    using Setter = std::function<void(const std::string&, const std::string&)>;
    const std::map<std::string, Setter> with_value = {
        {"--id", [&](auto&, auto& v) { a.id = v; }},
        {"--name", [&](auto&, auto& v) { a.name = v; }},
        {"--pod-name", [&](auto&, auto& v) { a.pod_name = v; }},
        {"--pod-namespace", [&](auto&, auto& v) { a.pod_namespace = v; }},
        {"--bundle", [&](auto&, auto& v) { a.bundle = v; }},
        {"--runtime", [&](auto&, auto& v) { a.runtime = v; }},
        {"--runtime-arg", [&](auto&, auto& v) { a.runtime_args.push_back(v); }},
        {"--log-path", [&](auto&, auto& v) { a.log_path = v; }},
        {"--exit-dir", [&](auto&, auto& v) { a.exit_dir = v; }},
        {"--socket-dir", [&](auto&, auto& v) { a.socket_dir = v; }},
        {"--log-size-max", [&](auto& o, auto& v) { a.log_size_max = to_int(o, v); }},
        {"--log-line-max", [&](auto& o, auto& v) { a.log_line_max = to_int(o, v); }},
        {"--oom-score-adj", [&](auto& o, auto& v) { a.oom_score_adj = static_cast<int>(to_int(o, v)); }},
        {"--sync-fd", [&](auto& o, auto& v) { a.sync_fd = static_cast<int>(to_int(o, v)); }},
        {"--start-fd", [&](auto& o, auto& v) { a.start_fd = static_cast<int>(to_int(o, v)); }},
    };
    const std::map<std::string, bool*> flags = {
        {"--terminal", &a.terminal},     {"--stdin", &a.stdin},
        {"--stdin-once", &a.stdin_once}, {"--foreground", &a.foreground},
    };

    for (size_t i = 1; i < argv.size(); ++i) {
        std::string opt = argv[i];
        std::string value;
        bool inline_value = false;
        if (const auto eq = opt.find('='); opt.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = opt.substr(eq + 1);
            opt.resize(eq);
            inline_value = true;
        }
        if (opt == "--no-journal" && !inline_value) {
            a.journal = false;
        } else if (auto f = flags.find(opt); f != flags.end()) {
            if (inline_value) throw Error(Code::InvalidArgument, opt + " takes no value");
            *f->second = true;
        } else if (auto s = with_value.find(opt); s != with_value.end()) {
            if (!inline_value) {
                if (i + 1 >= argv.size()) throw Error(Code::InvalidArgument, opt + " needs a value");
                value = argv[++i];
            }
            s->second(opt, value);
        } else {
            throw Error(Code::InvalidArgument, "unknown argument '" + argv[i] + "'");
        }
    }

    if (!is_hex_id(a.id)) throw Error(Code::InvalidArgument, "--id: want 64 lowercase hex digits, got '" + a.id + "'");
    for (const auto& [opt, value] : {std::pair<const char*, const std::string&>{"--bundle", a.bundle},
                                     {"--runtime", a.runtime},
                                     {"--exit-dir", a.exit_dir},
                                     {"--socket-dir", a.socket_dir}}) {
        if (value.empty()) throw Error(Code::InvalidArgument, std::string(opt) + " is required");
        if (value[0] != '/') throw Error(Code::InvalidArgument, std::string(opt) + ": want an absolute path, got '" + value + "'");
    }
    if (!a.log_path.empty() && a.log_path[0] != '/')
        throw Error(Code::InvalidArgument, "--log-path: want an absolute path, got '" + a.log_path + "'");
    if (a.stdin_once && !a.stdin) throw Error(Code::InvalidArgument, "--stdin-once needs --stdin");
    if (a.log_line_max < 1) throw Error(Code::InvalidArgument, "--log-line-max: must be at least 1");
    if (a.oom_score_adj < -1000 || a.oom_score_adj > 1000)
        throw Error(Code::InvalidArgument, "--oom-score-adj: must be in [-1000, 1000]");
    if (!a.foreground && (a.sync_fd < 0 || a.start_fd < 0))
        throw Error(Code::InvalidArgument, "--sync-fd and --start-fd are required unless --foreground");
    return a;
}

}  // namespace crisd::conmon
