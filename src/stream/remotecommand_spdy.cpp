#include "stream/remotecommand_spdy.hpp"

#include "common/error.hpp"

namespace crisd::stream::spdy {

int remotecommand_version(std::string_view protocol) {
    if (protocol == "v4.channel.k8s.io") return 4;
    if (protocol == "v3.channel.k8s.io") return 3;
    if (protocol == "v2.channel.k8s.io") return 2;
    if (protocol == "channel.k8s.io" || protocol.empty()) return 1;
    return 0;
}

namespace {

std::string header(const Headers& headers, std::string_view name) {
    for (const auto& [n, v] : headers)
        if (n == name) return v;
    return {};
}

}  // namespace

RemoteCommandServer::RemoteCommandServer(std::string protocol, Expect expect, Callbacks callbacks, Options options)
    : version_(remotecommand_version(protocol)),
      expect_(expect),
      cb_(std::move(callbacks)),
      session_(Role::Server, session_callbacks(), options) {
    if (version_ == 0) throw Error(Code::InvalidArgument, "spdy: unknown remote command protocol \"" + protocol + "\"");
    if (expect_.tty) expect_.stderr = false;  // the kubelet drops stderr with a tty
}

spdy::Callbacks RemoteCommandServer::session_callbacks() {
    // Called while constructing session_; the lambdas run only later, from feed().
    spdy::Callbacks cb;
    cb.on_syn_stream = [this](uint32_t id, const Headers& h, bool fin) { on_syn_stream(id, h, fin); };
    cb.on_syn_reply = [](uint32_t, const Headers&, bool) {};
    cb.on_data = [this](uint32_t id, std::string_view d, bool fin) { on_data(id, d, fin); };
    cb.on_rst_stream = [this](uint32_t id, uint32_t) { on_rst(id); };
    cb.on_goaway = [this](uint32_t, uint32_t) {
        if (cb_.on_client_gone) cb_.on_client_gone();
    };
    return cb;
}

size_t RemoteCommandServer::expected_streams() const {
    size_t n = 1;  // error
    n += expect_.stdin;
    n += expect_.stdout;
    n += expect_.stderr;
    n += expect_.tty && version_ >= 3;
    return n;
}

void RemoteCommandServer::on_syn_stream(uint32_t id, const Headers& headers, bool fin) {
    const std::string type = header(headers, "streamtype");
    uint32_t* slot = nullptr;
    if (type == "error") slot = &error_;
    else if (type == "stdin") slot = &stdin_;
    else if (type == "stdout") slot = &stdout_;
    else if (type == "stderr") slot = &stderr_;
    else if (type == "resize" && version_ >= 3) slot = &resize_;
    if (!slot || finished_) {
        // The kubelet answers an unknown stream type and ignores it; we refuse it.
        session_.reset(id, rst::RefusedStream);
        return;
    }
    if (*slot != 0) {
        session_.reset(id, rst::ProtocolError);  // a second stream of one type
        return;
    }
    *slot = id;
    session_.reply(id, {}, false);
    if (fin && slot == &stdin_ && !stdin_closed_) {
        stdin_closed_ = true;
        if (ready_ && cb_.on_stdin_closed) cb_.on_stdin_closed();
    }
    ++received_;
    check_ready();
}

void RemoteCommandServer::check_ready() {
    if (ready_ || received_ < expected_streams()) return;
    ready_ = true;
    // v1: the server closes its (never used) side of stdin at once, as the 1.0 kubelet did.
    if (version_ == 1 && stdin_) session_.close_stream(stdin_);
    if (cb_.on_ready) cb_.on_ready();
    if (stdin_closed_ && cb_.on_stdin_closed) cb_.on_stdin_closed();  // closed before everything was up
}

void RemoteCommandServer::on_data(uint32_t id, std::string_view data, bool fin) {
    if (id == stdin_ && id != 0) {
        if (stdin_closed_) return;
        if (!data.empty() && cb_.on_stdin) cb_.on_stdin(data);
        if (fin) {
            stdin_closed_ = true;
            if (ready_ && cb_.on_stdin_closed) cb_.on_stdin_closed();
        }
    } else if (id == resize_ && id != 0) {
        if (!data.empty() && cb_.on_resize) cb_.on_resize(data);
    }
    // Bytes on error, stdout or stderr from the client mean nothing; a FIN there is the
    // client being done with them.
}

void RemoteCommandServer::on_rst(uint32_t id) {
    if (id == stdin_) {
        stdin_ = 0;
        if (!stdin_closed_) {
            stdin_closed_ = true;
            if (ready_ && cb_.on_stdin_closed) cb_.on_stdin_closed();
        }
        return;
    }
    if (id == error_ || id == stdout_ || id == stderr_) {
        if (id == error_) error_ = 0;
        if (id == stdout_) stdout_ = 0;
        if (id == stderr_) stderr_ = 0;
        if (!finished_ && cb_.on_client_gone) cb_.on_client_gone();
    }
    if (id == resize_) resize_ = 0;
}

void RemoteCommandServer::write_stdout(std::string_view data) {
    if (stdout_ && !finished_ && !data.empty()) session_.send_data(stdout_, data, false);
}

void RemoteCommandServer::write_stderr(std::string_view data) {
    if (stderr_ && !finished_ && !data.empty()) session_.send_data(stderr_, data, false);
}

void RemoteCommandServer::finish(std::string_view status) {
    if (finished_) return;
    finished_ = true;
    if (stdout_) session_.close_stream(stdout_);
    if (stderr_) session_.close_stream(stderr_);
    if (error_) session_.send_data(error_, status, true);
    if (resize_) session_.close_stream(resize_);
    if (stdin_) session_.close_stream(stdin_);  // we never write to it; the client's copy ends
    session_.goaway(goaway::Ok);
}

}  // namespace crisd::stream::spdy
