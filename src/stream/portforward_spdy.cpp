#include "stream/portforward_spdy.hpp"

#include <charconv>
#include <vector>

namespace crisd::stream::spdy {

namespace {

std::string header(const Headers& headers, std::string_view name) {
    for (const auto& [n, v] : headers)
        if (n == name) return v;
    return {};
}

}  // namespace

PortForwardServer::PortForwardServer(Callbacks callbacks, Options options, std::function<Clock::time_point()> now)
    : cb_(std::move(callbacks)), now_(std::move(now)), session_(Role::Server, session_callbacks(), options) {}

spdy::Callbacks PortForwardServer::session_callbacks() {
    spdy::Callbacks cb;
    cb.on_syn_stream = [this](uint32_t id, const Headers& h, bool) { on_syn_stream(id, h); };
    cb.on_syn_reply = [](uint32_t, const Headers&, bool) {};
    cb.on_data = [this](uint32_t id, std::string_view d, bool fin) { on_data(id, d, fin); };
    cb.on_rst_stream = [this](uint32_t id, uint32_t) { on_rst(id); };
    cb.on_goaway = [this](uint32_t, uint32_t) {
        // The client is going away: every forwarded connection ends.
        std::vector<std::string> keys;
        for (const auto& [k, p] : pairs_) keys.push_back(k);
        for (const auto& k : keys) drop(k, true);
    };
    return cb;
}

void PortForwardServer::on_syn_stream(uint32_t id, const Headers& headers) {
    const std::string port_s = header(headers, "port");
    const std::string type = header(headers, "streamtype");
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_s.data(), port_s.data() + port_s.size(), port);
    if (port_s.empty() || ec != std::errc() || end != port_s.data() + port_s.size() || port < 1 || port > 65535 ||
        (type != "error" && type != "data")) {
        session_.reset(id, rst::RefusedStream);
        return;
    }
    std::string key = header(headers, "requestid");
    if (key.empty()) key = std::to_string(type == "error" ? id : id - 2);  // the kubelet's fallback for old clients
    session_.reply(id, {}, false);
    auto [it, created] = pairs_.try_emplace(key);
    Pair& p = it->second;
    if (created) {
        p.created = now_();
        p.port = static_cast<uint16_t>(port);
    }
    uint32_t& slot = type == "error" ? p.error : p.data;
    if (slot != 0 || p.port != port) {
        // "error stream already assigned" (or a pair that disagrees about its port).
        std::string msg = "error processing stream for request " + key + ": " + type +
                          (slot != 0 ? " stream already assigned" : " stream names another port");
        if (p.error) session_.send_data(p.error, msg, false);
        session_.reset(id, rst::ProtocolError);
        return;
    }
    slot = id;
    stream_to_key_[id] = key;
    if (p.error && p.data && !p.connected) {
        p.connected = true;
        requests_[p.data] = key;
        if (cb_.on_connect) cb_.on_connect(p.data, p.port);
    }
}

PortForwardServer::Pair* PortForwardServer::pair_of_data(uint32_t data_id) {
    auto it = requests_.find(data_id);
    if (it == requests_.end()) return nullptr;
    auto p = pairs_.find(it->second);
    return p == pairs_.end() ? nullptr : &p->second;
}

void PortForwardServer::on_data(uint32_t id, std::string_view data, bool fin) {
    auto k = stream_to_key_.find(id);
    if (k == stream_to_key_.end()) return;
    auto pit = pairs_.find(k->second);
    if (pit == pairs_.end()) return;
    Pair& p = pit->second;
    if (id != p.data) return;  // the client writes nothing on the error stream (it closes it at once)
    if (!p.connected) return;  // data before the pair is complete: client-go sends none
    if (!data.empty() && cb_.on_data) cb_.on_data(id, data);
    if (fin && !p.data_closed) {
        p.data_closed = true;
        if (cb_.on_data_closed) cb_.on_data_closed(id);
    }
}

void PortForwardServer::on_rst(uint32_t id) {
    auto k = stream_to_key_.find(id);
    if (k == stream_to_key_.end()) return;
    const std::string key = k->second;  // drop() erases the map entry
    drop(key, true);
}

void PortForwardServer::drop(const std::string& key, bool cancel) {
    auto it = pairs_.find(key);
    if (it == pairs_.end()) return;
    Pair p = it->second;
    pairs_.erase(it);
    stream_to_key_.erase(p.error);
    stream_to_key_.erase(p.data);
    if (p.connected) {
        requests_.erase(p.data);
        if (cancel && cb_.on_cancel) cb_.on_cancel(p.data);
    }
    if (cancel) {
        if (p.data && session_.stream_open(p.data)) session_.reset(p.data, rst::Cancel);
        if (p.error && session_.stream_open(p.error)) session_.reset(p.error, rst::Cancel);
    }
}

void PortForwardServer::send(uint32_t request, std::string_view data) {
    if (!pair_of_data(request) || data.empty()) return;
    session_.send_data(request, data, false);
}

void PortForwardServer::close(uint32_t request) {
    Pair* p = pair_of_data(request);
    if (!p) return;
    session_.close_stream(p->data);
    session_.close_stream(p->error);
    const std::string key = requests_[request];
    drop(key, false);
}

void PortForwardServer::fail(uint32_t request, std::string_view message) {
    Pair* p = pair_of_data(request);
    if (!p) return;
    session_.send_data(p->error, message, true);
    session_.close_stream(p->data);
    const std::string key = requests_[request];
    drop(key, false);
}

size_t PortForwardServer::pending_bytes(uint32_t request) const { return session_.queued_bytes(request); }

size_t PortForwardServer::expire(std::chrono::milliseconds timeout) {
    const auto now = now_();
    std::vector<std::string> stale;
    for (const auto& [k, p] : pairs_)
        if (!p.connected && now - p.created >= timeout) stale.push_back(k);
    for (const auto& k : stale) {
        Pair p = pairs_[k];
        if (p.error) session_.send_data(p.error, "(request=" + k + ") timed out waiting for streams", true);
        if (p.data) session_.reset(p.data, rst::Cancel);
        drop(k, false);
    }
    return stale.size();
}

}  // namespace crisd::stream::spdy
