#include "stream/protocol.hpp"

#include <nlohmann/json.hpp>

#include <charconv>

namespace crisd::stream::protocol {
namespace {

std::vector<std::string> split_offered(std::string_view offered) {
    std::vector<std::string> out;
    while (!offered.empty()) {
        const auto comma = offered.find(',');
        auto item = offered.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        offered.remove_prefix(comma + 1);
    }
    return out;
}

std::optional<WsProtocol> negotiate(std::string_view offered, const std::vector<WsProtocol>& supported) {
    const auto items = split_offered(offered);
    if (items.empty()) return WsProtocol{"", 1, false};
    for (const auto& o : items)
        for (const auto& s : supported)
            if (s.name == o) return s;
    return std::nullopt;
}

}  // namespace

std::optional<WsProtocol> negotiate_ws_remotecommand(std::string_view offered) {
    static const std::vector<WsProtocol> supported = {
        {"v5.channel.k8s.io", 5, false},     {"v4.channel.k8s.io", 4, false},
        {"v4.base64.channel.k8s.io", 4, true}, {"channel.k8s.io", 1, false},
        {"base64.channel.k8s.io", 1, true},
    };
    return negotiate(offered, supported);
}

std::optional<WsProtocol> negotiate_ws_portforward(std::string_view offered) {
    static const std::vector<WsProtocol> supported = {
        {"v4.channel.k8s.io", 4, false},
        {"v4.base64.channel.k8s.io", 4, true},
    };
    return negotiate(offered, supported);
}

std::string negotiate_spdy_remotecommand(const std::vector<std::string>& offered) {
    for (const auto& header : offered)
        for (const auto& o : split_offered(header))
            for (const char* s : kSpdyRemoteCommandProtocols)
                if (o == s) return o;
    return "";
}

std::string negotiate_spdy_portforward(const std::vector<std::string>& offered) {
    for (const auto& header : offered)
        for (const auto& o : split_offered(header))
            if (o == kSpdyPortForwardProtocol) return o;
    return "";
}

int spdy_version(std::string_view protocol) {
    if (protocol == "v4.channel.k8s.io") return 4;
    if (protocol == "v3.channel.k8s.io") return 3;
    if (protocol == "v2.channel.k8s.io") return 2;
    return 1;
}

std::string base64_encode(std::string_view in) {
    static const char* const t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                           static_cast<unsigned char>(in[i + 2]);
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
        out += t[(v >> 18) & 63];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = val(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            out += static_cast<char>((acc >> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return out;
}

std::string ws_encode(const WsProtocol& p, std::uint8_t channel, std::string_view data) {
    if (p.base64) return std::string(1, static_cast<char>('0' + channel)) + base64_encode(data);
    std::string out(1, static_cast<char>(channel));
    out.append(data);
    return out;
}

std::optional<WsMessage> ws_decode(const WsProtocol& p, std::string_view message) {
    if (message.empty()) return std::nullopt;
    WsMessage m;
    m.channel = static_cast<std::uint8_t>(message[0]);
    message.remove_prefix(1);
    if (p.version >= 5 && m.channel == kStreamClose) {
        m.data.assign(message);
        return m;
    }
    if (p.base64) {
        m.channel = static_cast<std::uint8_t>(m.channel - '0');
        auto d = base64_decode(message);
        if (!d) return std::nullopt;
        m.data = std::move(*d);
    } else {
        m.data.assign(message);
    }
    return m;
}

std::string exit_status(int version, int exit_code) {
    if (exit_code == 0) return version >= 4 ? R"({"metadata":{},"status":"Success"})" : "";
    const std::string message = "command terminated with non-zero exit code: exit status " + std::to_string(exit_code);
    if (version < 4) return message;
    nlohmann::json j = {{"metadata", nlohmann::json::object()},
                        {"status", "Failure"},
                        {"message", message},
                        {"reason", "NonZeroExitCode"},
                        {"details", {{"causes", {{{"reason", "ExitCode"}, {"message", std::to_string(exit_code)}}}}}}};
    return j.dump();
}

std::string error_status(int version, const std::string& message) {
    if (version < 4) return message;
    nlohmann::json j = {{"metadata", nlohmann::json::object()},
                        {"status", "Failure"},
                        {"message", message},
                        {"reason", "InternalError"},
                        {"details", {{"causes", {{{"message", message}}}}}},
                        {"code", 500}};
    return j.dump();
}

std::optional<TerminalSize> ResizeDecoder::next() {
    for (;;) {
        const auto open = buf_.find('{');
        if (open == std::string::npos) {
            buf_.clear();
            return std::nullopt;
        }
        buf_.erase(0, open);
        const auto close = buf_.find('}');
        if (close == std::string::npos) return std::nullopt;
        const std::string obj = buf_.substr(0, close + 1);
        buf_.erase(0, close + 1);
        const auto j = nlohmann::json::parse(obj, nullptr, false);
        if (j.is_discarded() || !j.is_object()) continue;
        TerminalSize s;
        const auto w = j.find("Width");
        const auto h = j.find("Height");
        if (w == j.end() || h == j.end() || !w->is_number_unsigned() || !h->is_number_unsigned()) continue;
        s.width = w->get<unsigned>();
        s.height = h->get<unsigned>();
        return s;
    }
}

std::string port_prefix(std::uint16_t port) {
    std::string out(2, '\0');
    out[0] = static_cast<char>(port & 0xff);
    out[1] = static_cast<char>(port >> 8);
    return out;
}

std::optional<std::vector<std::uint16_t>> ports_from_query(std::string_view target) {
    std::vector<std::uint16_t> ports;
    const auto q = target.find('?');
    if (q == std::string_view::npos) return ports;
    auto query = target.substr(q + 1);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto item = query.substr(0, amp);
        if (item.starts_with("port=")) {
            const auto v = item.substr(5);
            unsigned n = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || end != v.data() + v.size() || n == 0 || n > 65535) return std::nullopt;
            ports.push_back(static_cast<std::uint16_t>(n));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return ports;
}

}  // namespace crisd::stream::protocol
