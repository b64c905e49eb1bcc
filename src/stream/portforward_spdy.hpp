// The server side of port forwarding over SPDY (portforward.k8s.io), as the kubelet's
// streaming server does it (pkg/kubelet/cri/streaming/portforward/httpstream.go),
// sans-IO like spdy::Session. Each forwarded connection is a pair of client streams
// with the same "requestid" and "port" headers: "streamtype: error" and
// "streamtype: data" (a client without requestid gets the kubelet's fallback: the
// error stream's id, the data stream's id - 2). A stream without a valid port (1-65535)
// or with another stream type is refused. When a pair is complete, on_connect asks the
// caller to connect to the port; bytes then flow both ways until either side closes.
//
// A request is named by its data stream's id. The caller owns the socket and the
// clock: expire(now) fails the pairs that are still incomplete after the timeout
// ("timed out waiting for streams", on their error stream), as the kubelet does after
// its stream-creation timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "stream/spdy.hpp"

namespace crisd::stream::spdy {

class PortForwardServer {
public:
    using Clock = std::chrono::steady_clock;
    struct Callbacks {
        std::function<void(uint32_t request, uint16_t port)> on_connect;     // both streams are up
        std::function<void(uint32_t request, std::string_view)> on_data;    // bytes for the port
        std::function<void(uint32_t request)> on_data_closed;               // the client half-closed: shutdown(SHUT_WR)
        std::function<void(uint32_t request)> on_cancel;                    // the client reset it, or went away
    };

    explicit PortForwardServer(Callbacks callbacks, Options options = {},
                               std::function<Clock::time_point()> now = &Clock::now);

    void feed(std::string_view bytes) { session_.feed(bytes); }  // throws crisd::Error on a protocol error
    std::string take_output() { return session_.take_output(); }
    bool wants_write() const { return session_.wants_write(); }

    // Bytes from the pod's port to the client.
    void send(uint32_t request, std::string_view data);
    // The port's side closed (after the last send): FIN on data and error.
    void close(uint32_t request);
    // The connection failed: the message goes on the error stream, both streams close.
    void fail(uint32_t request, std::string_view message);

    size_t pending_bytes(uint32_t request) const;  // for backpressure per connection
    size_t pending_bytes() const { return session_.queued_bytes() + session_.output_bytes(); }
    // Fails incomplete pairs older than `timeout`; returns how many.
    size_t expire(std::chrono::milliseconds timeout);
    size_t active() const { return requests_.size(); }
    bool client_gone() const { return session_.goaway_received(); }
    // Says GOAWAY (the server is stopping); the caller closes when output is written.
    void shutdown() { session_.goaway(goaway::Ok); }

    Session& session() { return session_; }

private:
    struct Pair {
        uint32_t error = 0;
        uint32_t data = 0;
        uint16_t port = 0;
        Clock::time_point created;
        bool connected = false;
        bool data_closed = false;  // client FIN on data
    };

    spdy::Callbacks session_callbacks();
    void on_syn_stream(uint32_t id, const Headers& headers);
    void on_data(uint32_t id, std::string_view data, bool fin);
    void on_rst(uint32_t id);
    Pair* pair_of_data(uint32_t data_id);
    void drop(const std::string& key, bool cancel);

    Callbacks cb_;
    std::function<Clock::time_point()> now_;
    Session session_;
    std::map<std::string, Pair> pairs_;              // by request id
    std::map<uint32_t, std::string> requests_;       // data stream id -> request id (connected)
    std::map<uint32_t, std::string> stream_to_key_;  // every stream of a pair -> request id
};

}  // namespace crisd::stream::spdy
