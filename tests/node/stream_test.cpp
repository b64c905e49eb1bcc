// Streaming through the CRI against the node's crisd: Exec, Attach and
// PortForward return URLs on crisd's streaming server; a WebSocket client
// (tests/lib/stream_client) speaks the Kubernetes channel protocols there.
// Exit codes, stdin, stderr, a terminal and its resize, attach to a running
// container, port-forward to an HTTP server in a pod, single-use and
// expiring tokens; exec with runc and crun.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>

#include "cri_client.hpp"
#include "node_test.hpp"
#include "spdy_client.hpp"
#include "stream_client.hpp"

using namespace crisd::node;
using crisd::test::CallError;
using crisd::test::CriClient;
using crisd::test::WsStream;
namespace v1 = ::runtime::v1;
using namespace std::chrono_literals;

namespace {

const std::string kImage = "127.0.0.1:5000/busybox:latest";
const std::string kLogDir = "/var/log/crisd-stream-test";

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(100ms);
    }
    return cond();
}

class Streaming : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        CriClient c(kCriSocket);
        v1::PullImageRequest req;
        req.mutable_image()->set_image(kImage);
        c.call(&v1::ImageService::Stub::PullImage, "PullImage", req);
    }
    void TearDown() override {
        try {
            v1::ListPodSandboxRequest req;
            const auto pods = client_->call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", req);
            for (const auto& p : pods.items())
                if (p.labels().count("test") && p.labels().at("test") == "stream") {
                    v1::RemovePodSandboxRequest rm;
                    rm.set_pod_sandbox_id(p.id());
                    client_->call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
                }
        } catch (const CallError& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
        }
        sh("rm -rf " + kLogDir);
    }

    std::string run_pod(const std::string& name, const std::string& handler = "", bool host_network = false) {
        v1::RunPodSandboxRequest req;
        auto* c = req.mutable_config();
        auto* md = c->mutable_metadata();
        md->set_name(name);
        md->set_namespace_("stream-test");
        md->set_uid("uid-" + name);
        c->set_hostname(name);
        c->set_log_directory(kLogDir + "/" + name);
        (*c->mutable_labels())["test"] = "stream";
        auto* ns = c->mutable_linux()->mutable_security_context()->mutable_namespace_options();
        ns->set_network(host_network ? v1::NODE : v1::POD);
        ns->set_pid(v1::CONTAINER);
        ns->set_ipc(v1::POD);
        req.set_runtime_handler(handler);
        pod_config_ = req.config();
        return client_->call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", req).pod_sandbox_id();
    }

    // A running container in a new pod.
    std::string run(const std::string& pod_name, const std::string& script, const std::string& handler = "",
                    bool stdin = false, bool tty = false, std::string* pod_id = nullptr, bool stdin_once = false) {
        const auto pod = run_pod(pod_name, handler);
        if (pod_id) *pod_id = pod;
        v1::CreateContainerRequest req;
        req.set_pod_sandbox_id(pod);
        auto* c = req.mutable_config();
        c->mutable_metadata()->set_name("main");
        c->mutable_image()->set_image(kImage);
        c->add_command("sh");
        c->add_args("-c");
        c->add_args(script);
        c->set_log_path("main.log");
        c->set_stdin(stdin);
        c->set_stdin_once(stdin_once);
        c->set_tty(tty);
        *req.mutable_sandbox_config() = pod_config_;
        const auto id =
            client_->call(&v1::RuntimeService::Stub::CreateContainer, "CreateContainer", req).container_id();
        v1::StartContainerRequest start;
        start.set_container_id(id);
        client_->call(&v1::RuntimeService::Stub::StartContainer, "StartContainer", start);
        return id;
    }

    v1::ExecRequest exec_req(const std::string& id, std::vector<std::string> cmd, bool in, bool out, bool err,
                             bool tty = false) {
        v1::ExecRequest req;
        req.set_container_id(id);
        for (auto& a : cmd) req.add_cmd(a);
        req.set_stdin(in);
        req.set_stdout(out);
        req.set_stderr(err);
        req.set_tty(tty);
        return req;
    }
    std::string exec_url(const v1::ExecRequest& req) {
        const auto url = client_->call(&v1::RuntimeService::Stub::Exec, "Exec", req).url();
        EXPECT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
        return url;
    }
    std::string sh_url(const std::string& id, const std::string& script, bool in = false) {
        return exec_url(exec_req(id, {"sh", "-c", script}, in, true, true));
    }

    v1::AttachRequest attach_req(const std::string& id, bool in, bool out, bool err) {
        v1::AttachRequest req;
        req.set_container_id(id);
        req.set_stdin(in);
        req.set_stdout(out);
        req.set_stderr(err);
        return req;
    }
    std::string attach_url(const v1::AttachRequest& req) {
        return client_->call(&v1::RuntimeService::Stub::Attach, "Attach", req).url();
    }
    v1::ContainerStatus container_status(const std::string& id) {
        v1::ContainerStatusRequest req;
        req.set_container_id(id);
        return client_->call(&v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", req).status();
    }

    std::unique_ptr<CriClient> client_ = std::make_unique<CriClient>(kCriSocket);
    v1::PodSandboxConfig pod_config_;
};

std::string crisd_pid() { return unit_property("crisd.service", "MainPID"); }

// A field of /proc/<pid>/status in KiB.
long status_kib(const std::string& pid, const std::string& field) {
    const auto out = sh("awk '/^" + field + ":/ {print $2}' /proc/" + pid + "/status").out;
    return std::atol(out.c_str());
}

int pipes_of(const std::string& pid) { return std::atoi(sh("ls -l /proc/" + pid + "/fd | grep -c pipe:").out.c_str()); }

class StreamingRuntimes : public Streaming, public ::testing::WithParamInterface<std::string> {};

}  // namespace

TEST_P(StreamingRuntimes, ExecExitCodesStdoutStderr) {
    const auto id = run("exec-" + GetParam(), "sleep 300", GetParam());

    auto r = crisd::test::ws_command(sh_url(id, "echo out-line; echo err-line >&2; exit 3"));
    EXPECT_EQ(r.out, "out-line\n");
    EXPECT_EQ(r.err, "err-line\n");
    EXPECT_EQ(crisd::test::exit_code_of_status(r.status), 3) << r.status;
    EXPECT_NE(r.status.find(R"("reason":"NonZeroExitCode")"), std::string::npos) << r.status;

    r = crisd::test::ws_command(sh_url(id, "echo fine"));
    EXPECT_EQ(r.out, "fine\n");
    EXPECT_EQ(r.status, R"({"metadata":{},"status":"Success"})");

    // The exec'd process ran in the container: its cgroup is the container's scope.
    r = crisd::test::ws_command(sh_url(id, "cat /proc/self/cgroup"));
    EXPECT_NE(r.out.find("crisd-" + id + ".scope"), std::string::npos) << r.out;
}

TEST_P(StreamingRuntimes, ExecStdinClosedByV5AndTtyResize) {
    const auto id = run("stdin-" + GetParam(), "sleep 300", GetParam());

    // v5: the client closes stdin, cat sees EOF and exits 0.
    auto r = crisd::test::ws_command(exec_url(exec_req(id, {"cat"}, true, true, false)), "v5.channel.k8s.io",
                                     std::string("line one\nline two\n"));
    EXPECT_EQ(r.out, "line one\nline two\n");
    EXPECT_EQ(r.status, R"({"metadata":{},"status":"Success"})");

    // v4 has no stdin close: head ends the command.
    r = crisd::test::ws_command(exec_url(exec_req(id, {"head", "-n", "1"}, true, true, false)), "v4.channel.k8s.io",
                                std::string("only\nnot this\n"));
    EXPECT_EQ(r.out, "only\n");
    EXPECT_EQ(crisd::test::exit_code_of_status(r.status), 0) << r.status;

    // A terminal: resized by the client, seen by stty inside.
    WsStream ws(exec_url(exec_req(id, {"sh", "-c", "sleep 1; stty size; exit 7"}, true, true, false, true)),
                "v5.channel.k8s.io");
    EXPECT_EQ(ws.protocol(), "v5.channel.k8s.io");
    ws.resize(123, 45);
    std::string out, status;
    while (auto m = ws.read()) {
        if (m->channel == 1) out += m->data;
        if (m->channel == 3) status += m->data;
    }
    EXPECT_NE(out.find("45 123"), std::string::npos) << out;
    EXPECT_EQ(crisd::test::exit_code_of_status(status), 7) << status;
}

// SPDY/3.1, as the kubelet and the API server speak to runtimes (client-go).
TEST_P(StreamingRuntimes, SpdyExecExitCodesStdinAndTty) {
    const auto id = run("spdy-" + GetParam(), "sleep 300", GetParam());
    crisd::test::RemoteCommandOptions o;
    auto r = crisd::test::remote_command(sh_url(id, "echo out-line; echo err-line >&2; exit 3"), o);
    EXPECT_EQ(r.http_status, 101) << r.http_body;
    EXPECT_EQ(r.protocol, "v4.channel.k8s.io");
    EXPECT_EQ(r.stdout_data, "out-line\n");
    EXPECT_EQ(r.stderr_data, "err-line\n");
    EXPECT_EQ(r.exit_code, 3) << r.status_json << r.error;

    o.want_stdin = true;
    o.want_stderr = false;
    o.stdin_data = "through spdy\n";
    r = crisd::test::remote_command(exec_url(exec_req(id, {"cat"}, true, true, false)), o);
    EXPECT_EQ(r.stdout_data, "through spdy\n");
    EXPECT_EQ(r.exit_code, 0) << r.status_json << r.error;

    // Older protocol versions: v2 has no resize stream and a plain-text error stream.
    crisd::test::RemoteCommandOptions v2;
    v2.protocols = {"v2.channel.k8s.io"};
    r = crisd::test::remote_command(sh_url(id, "echo old; exit 5"), v2);
    EXPECT_EQ(r.protocol, "v2.channel.k8s.io");
    EXPECT_EQ(r.stdout_data, "old\n");
    EXPECT_NE(r.error.find("non-zero exit code"), std::string::npos) << r.error << r.status_json;

    crisd::test::RemoteCommandOptions t;
    t.tty = true;
    t.want_stdin = true;
    t.want_stderr = false;
    t.close_stdin = false;
    t.resizes = {{101, 33}};
    r = crisd::test::remote_command(
        exec_url(exec_req(id, {"sh", "-c", "sleep 1; stty size; exit 4"}, true, true, false, true)), t);
    EXPECT_NE(r.stdout_data.find("33 101"), std::string::npos) << r.stdout_data;
    EXPECT_EQ(r.exit_code, 4) << r.status_json << r.error;
}

INSTANTIATE_TEST_SUITE_P(Runtimes, StreamingRuntimes, ::testing::Values("runc", "crun"));

TEST_F(Streaming, OlderProtocolsAndBadRequests) {
    std::string pod;
    const auto id = run("proto", "sleep 300", "", false, false, &pod);
    // channel.k8s.io (pre-v4): the error stream carries the message, not JSON.
    auto r = crisd::test::ws_command(sh_url(id, "echo x; exit 2"), "channel.k8s.io");
    EXPECT_EQ(r.out, "x\n");
    EXPECT_NE(r.status.find("non-zero exit code"), std::string::npos) << r.status;
    // No subprotocol at all: binary channels, like channel.k8s.io.
    r = crisd::test::ws_command(sh_url(id, "echo y"), "");
    EXPECT_EQ(r.out, "y\n");

    // An unknown subprotocol is refused (and the token is spent).
    std::string body;
    EXPECT_EQ(crisd::test::ws_upgrade_status(sh_url(id, "true"), "v9.nothing.k8s.io", &body), 400) << body;

    // SPDY without a common protocol: 403 with the server's protocols in
    // X-Accepted-Stream-Protocol-Versions, as apimachinery's Handshake answers.
    const auto spdy_refused = [](const std::string& url, const std::string& offer) {
        return sh("curl -si --max-time 5 -X POST -H 'Connection: Upgrade' -H 'Upgrade: SPDY/3.1' "
                  "-H 'X-Stream-Protocol-Version: " +
                  offer + "' " + quote(url))
            .out;
    };
    auto head = spdy_refused(sh_url(id, "true"), "v9.channel.k8s.io");
    EXPECT_NE(head.find("HTTP/1.1 403"), std::string::npos) << head;
    EXPECT_NE(head.find("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("X-Accepted-Stream-Protocol-Versions: channel.k8s.io\r\n"), std::string::npos) << head;
    // Port forward: the exact protocol name, not one that contains it.
    v1::PortForwardRequest pfr;
    pfr.set_pod_sandbox_id(pod);
    pfr.add_port(80);
    head = spdy_refused(client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", pfr).url(),
                        "v2.portforward.k8s.io");
    EXPECT_NE(head.find("HTTP/1.1 403"), std::string::npos) << head;
    EXPECT_NE(head.find("X-Accepted-Stream-Protocol-Versions: portforward.k8s.io\r\n"), std::string::npos) << head;

    // Requests the kubelet itself refuses.
    v1::ExecResponse resp;
    auto st = client_->try_call(&v1::RuntimeService::Stub::Exec, exec_req(id, {"sh"}, true, true, true, true), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    st = client_->try_call(&v1::RuntimeService::Stub::Exec, exec_req(id, {"sh"}, false, false, false), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    st = client_->try_call(&v1::RuntimeService::Stub::Exec, exec_req(id, {}, false, true, false), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    st = client_->try_call(&v1::RuntimeService::Stub::Exec, exec_req(std::string(64, 'f'), {"sh"}, false, true, false),
                           &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    v1::PortForwardRequest pf;
    pf.set_pod_sandbox_id(std::string(64, 'f'));
    v1::PortForwardResponse pf_resp;
    st = client_->try_call(&v1::RuntimeService::Stub::PortForward, pf, &pf_resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
}

TEST_F(Streaming, TokensAreSingleUseAndUnknownOnesGet404) {
    const auto id = run("tokens", "sleep 300");
    const auto url = sh_url(id, "echo once");
    EXPECT_EQ(crisd::test::ws_command(url).out, "once\n");
    std::string body;
    EXPECT_EQ(crisd::test::ws_upgrade_status(url, "v4.channel.k8s.io", &body), 404);
    EXPECT_NE(body.find("token"), std::string::npos) << body;
    const auto base = url.substr(0, url.find("/exec/"));
    EXPECT_EQ(crisd::test::ws_upgrade_status(base + "/exec/not-a-token"), 404);
    EXPECT_EQ(crisd::test::ws_upgrade_status(base + "/nothing"), 404);
    // An exec token does not open an attach.
    const auto url2 = sh_url(id, "true");
    EXPECT_EQ(crisd::test::ws_upgrade_status(base + "/attach/" + url2.substr(url2.rfind('/') + 1)), 404);

    // The address on io.crisd.Daemon1 is the one in the URLs.
    const auto addr = must("busctl get-property io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 StreamAddress");
    EXPECT_EQ(addr, "s \"" + base.substr(7) + "\"\n");
}

TEST_F(Streaming, ExpiredTokensGet404AndIdleSessionsClose) {
    // A 1 s lifetime and idle timeout through a drop-in (crisd.api.stream_token_ttl,
    // stream_idle_timeout), then back.
    // The node's /etc/crisd is read-only: a writable copy goes over it.
    must("rm -rf /tmp/stream-crisd-etc && cp -a /etc/crisd /tmp/stream-crisd-etc && mkdir -p "
         "/tmp/stream-crisd-etc/crisd.conf.d && printf '[crisd.api]\\nstream_token_ttl = 1\\nstream_idle_timeout = 1\\n' > "
         "/tmp/stream-crisd-etc/crisd.conf.d/90-stream-test.conf && mount --bind /tmp/stream-crisd-etc /etc/crisd && "
         "systemctl restart crisd.service");
    client_ = std::make_unique<CriClient>(kCriSocket);
    const auto id = run("expire", "sleep 300");
    const auto url = sh_url(id, "echo late");
    const auto spdy_url = sh_url(id, "echo late");
    std::this_thread::sleep_for(1500ms);
    EXPECT_EQ(crisd::test::ws_upgrade_status(url), 404);
    const auto expired = crisd::test::remote_command(spdy_url);
    EXPECT_EQ(expired.http_status, 404) << expired.http_body;
    EXPECT_NE(expired.http_body.find("token not found"), std::string::npos) << expired.http_body;
    EXPECT_EQ(crisd::test::ws_command(sh_url(id, "echo in-time")).out, "in-time\n");
    // stream_idle_timeout = 1: a session without traffic either way is closed.
    {
        WsStream ws(sh_url(id, "echo hi; exec sleep 302"), "v5.channel.k8s.io", 20s);
        const auto t0 = std::chrono::steady_clock::now();
        std::optional<crisd::test::WsMessage> m;
        try {
            while ((m = ws.read())) {
            }
        } catch (const std::exception&) {
        }
        const auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_LT(took, 10s);
        EXPECT_GE(took, 900ms);
        EXPECT_TRUE(wait_for([] { return sh("pgrep -fx 'sleep 302' | wc -l").out == "0\n"; }, 10s));
    }
    must("umount /etc/crisd && rm -rf /tmp/stream-crisd-etc && systemctl restart crisd.service");
    client_ = std::make_unique<CriClient>(kCriSocket);
}

TEST_F(Streaming, AttachSeesOutputAndSendsStdin) {
    const auto id = run("attach", "echo ready; while read l; do echo got-$l; echo err-$l >&2; done", "", true);
    v1::AttachRequest req;
    req.set_container_id(id);
    req.set_stdin(true);
    req.set_stdout(true);
    req.set_stderr(true);
    const auto url = client_->call(&v1::RuntimeService::Stub::Attach, "Attach", req).url();
    ASSERT_NE(url.find("/attach/"), std::string::npos) << url;
    WsStream ws(url, "v5.channel.k8s.io", 20s);
    ws.send(0, "hello\n");
    std::string out, err;
    while (out.find("got-hello") == std::string::npos || err.find("err-hello") == std::string::npos) {
        auto m = ws.read();
        ASSERT_TRUE(m) << "closed early; out: " << out;
        if (m->channel == 1) out += m->data;
        if (m->channel == 2) err += m->data;
    }
    ws.close();

    // Attach without stdin to a container that was not made with stdin is
    // fine; asking for stdin is not.
    const auto other = run("attach-nostdin", "sleep 300");
    req.set_container_id(other);
    v1::AttachResponse resp;
    EXPECT_EQ(client_->try_call(&v1::RuntimeService::Stub::Attach, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(Streaming, PortForwardToAnHttpServerInThePod) {
    std::string pod;
    run("pf", "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        "", false, false, &pod);
    v1::PortForwardRequest req;
    req.set_pod_sandbox_id(pod);
    req.add_port(8080);
    // The server needs a moment to listen; a refused connection is reported
    // on the error channel.
    std::string data, error;
    ASSERT_TRUE(wait_for(
        [&] {
            const auto url = client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", req).url();
            WsStream ws(url, "v4.channel.k8s.io");
            data.clear();
            error.clear();
            int prefixes = 0;
            ws.send(0, "GET / HTTP/1.0\r\n\r\n");
            while (auto m = ws.read()) {
                std::string d = m->data;
                if (prefixes < 2 && d.size() >= 2 && (m->channel == 0 || m->channel == 1) &&
                    static_cast<unsigned char>(d[0]) == (8080 & 0xff) && static_cast<unsigned char>(d[1]) == (8080 >> 8)) {
                    ++prefixes;
                    d = d.substr(2);
                }
                if (m->channel == 0) data += d;
                if (m->channel == 1) error += d;
            }
            return data.find("hello-from-pod") != std::string::npos;
        },
        15s))
        << "data: " << data << "\nerror: " << error;
    EXPECT_NE(data.find("200 OK"), std::string::npos) << data;

    // A port nobody listens on: the error channel says so.
    v1::PortForwardRequest bad;
    bad.set_pod_sandbox_id(pod);
    bad.add_port(9);
    WsStream ws(client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", bad).url(), "v4.channel.k8s.io");
    error.clear();
    while (auto m = ws.read())
        if (m->channel == 1) error += m->data;
    EXPECT_NE(error.find("error forwarding port 9"), std::string::npos) << error;

    // Two ports from the query (kubectl's form), channels 0/1 and 2/3, each
    // opened with its port number.
    v1::PortForwardRequest none;
    none.set_pod_sandbox_id(pod);
    WsStream two(client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", none).url() +
                     "?port=8080&port=9",
                 "v4.channel.k8s.io");
    two.send(0, "GET / HTTP/1.0\r\n\r\n");
    std::string ch[4];
    while (auto m = two.read())
        if (m->channel < 4) ch[m->channel] += m->data;
    EXPECT_EQ(ch[0].substr(0, 2), std::string("\x90\x1f", 2));
    EXPECT_EQ(ch[1], std::string("\x90\x1f", 2)) << "no error on port 8080";
    EXPECT_NE(ch[0].find("hello-from-pod"), std::string::npos) << ch[0];
    EXPECT_EQ(ch[2], std::string("\x09\x00", 2));
    EXPECT_NE(ch[3].find("error forwarding port 9"), std::string::npos) << ch[3];
}

TEST_F(Streaming, SpdyAttachPortForwardAndTokens) {
    const auto id = run("spdy-attach", "echo ready; while read l; do echo got-$l; done", "", true);
    v1::AttachRequest req;
    req.set_container_id(id);
    req.set_stdin(true);
    req.set_stdout(true);
    crisd::test::RemoteCommandOptions o;
    o.want_stdin = true;
    o.want_stderr = false;
    o.close_stdin = false;
    o.stdin_data = "spdy\n";
    o.until_stdout_contains = "got-spdy";
    const auto url = client_->call(&v1::RuntimeService::Stub::Attach, "Attach", req).url();
    auto r = crisd::test::remote_command(url, o);
    EXPECT_EQ(r.http_status, 101) << r.http_body;
    EXPECT_NE(r.stdout_data.find("got-spdy"), std::string::npos) << r.stdout_data;
    // The token was used.
    r = crisd::test::remote_command(url, o);
    EXPECT_EQ(r.http_status, 404) << r.http_body;

    std::string pod;
    run("spdy-pf", "mkdir -p /tmp/www && echo spdy-pod > /tmp/www/index.html && exec httpd -f -p 8081 -h /tmp/www",
        "", false, false, &pod);
    v1::PortForwardRequest pf;
    pf.set_pod_sandbox_id(pod);
    pf.add_port(8081);
    crisd::test::PortForwardResult res;
    EXPECT_TRUE(wait_for(
        [&] {
            const auto pf_url = client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", pf).url();
            res = crisd::test::port_forward(pf_url, 8081, "GET / HTTP/1.0\r\n\r\n");
            return res.data.find("spdy-pod") != std::string::npos;
        },
        15s))
        << res.http_status << " data: " << res.data << " error: " << res.error;
    EXPECT_EQ(res.protocol, "portforward.k8s.io");

    const auto pf_url = client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", pf).url();
    res = crisd::test::port_forward(pf_url, 9, "x");
    EXPECT_NE(res.error.find("error forwarding port 9"), std::string::npos) << res.error;
}

TEST_F(Streaming, TlsFromCertAndKeyFiles) {
    // HTTPS from a self-signed certificate (crisd.api.stream_enable_tls); the
    // node's /etc/crisd is read-only, so a writable copy goes over it.
    must("rm -rf /tmp/stream-crisd-etc && cp -a /etc/crisd /tmp/stream-crisd-etc && mkdir -p "
         "/tmp/stream-crisd-etc/crisd.conf.d /tmp/stream-tls && "
         "openssl req -config /dev/null -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
         "-addext subjectAltName=IP:127.0.0.1 -keyout /tmp/stream-tls/key.pem "
         "-out /tmp/stream-tls/cert.pem 2>/dev/null && "
         "printf '[crisd.api]\\nstream_enable_tls = true\\nstream_tls_cert = \"/tmp/stream-tls/cert.pem\"\\n"
         "stream_tls_key = \"/tmp/stream-tls/key.pem\"\\n' > /tmp/stream-crisd-etc/crisd.conf.d/90-stream-test.conf && "
         "mount --bind /tmp/stream-crisd-etc /etc/crisd && systemctl restart crisd.service");
    client_ = std::make_unique<CriClient>(kCriSocket);
    const auto id = run("tls", "sleep 300");
    const auto url = client_->call(&v1::RuntimeService::Stub::Exec, "Exec",
                                   exec_req(id, {"echo", "tls"}, false, true, false))
                         .url();
    EXPECT_EQ(url.rfind("https://127.0.0.1:", 0), 0u) << url;
    const std::string ws_headers =
        " -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13'"
        " -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: v4.channel.k8s.io' ";
    const auto base = url.substr(0, url.find("/exec/"));
    EXPECT_EQ(sh("curl -s --cacert /tmp/stream-tls/cert.pem --max-time 5 -o /dev/null -w '%{http_code}'" +
                 ws_headers + quote(base + "/exec/nothing"))
                  .out,
              "404");
    // The real token upgrades (curl then just waits: cut short).
    EXPECT_EQ(sh("curl -s --cacert /tmp/stream-tls/cert.pem --max-time 3 -o /dev/null -w '%{http_code}'" +
                 ws_headers + quote(url))
                  .out,
              "101");
    // A whole exec over SPDY through TLS, the server checked against the certificate.
    crisd::test::RemoteCommandOptions o;
    o.tls_ca_file = "/tmp/stream-tls/cert.pem";
    const auto r = crisd::test::remote_command(
        client_->call(&v1::RuntimeService::Stub::Exec, "Exec",
                      exec_req(id, {"sh", "-c", "echo over-tls; exit 6"}, false, true, true))
            .url(),
        o);
    EXPECT_EQ(r.http_status, 101) << r.http_body;
    EXPECT_EQ(r.stdout_data, "over-tls\n");
    EXPECT_EQ(r.exit_code, 6) << r.status_json << r.error;
    // Plain HTTP to the TLS port gets no answer.
    EXPECT_NE(sh("curl -s --max-time 3 -o /dev/null -w '%{http_code}' " + quote("http" + base.substr(5) + "/x")).out,
              "404");
    must("umount /etc/crisd && rm -rf /tmp/stream-crisd-etc /tmp/stream-tls && systemctl restart crisd.service");
    client_ = std::make_unique<CriClient>(kCriSocket);
}

TEST_F(Streaming, StoppingCrisdEndsSessionsAndTheirCommands) {
    const auto id = run("stop", "sleep 300");
    WsStream ws(sh_url(id, "echo started; exec sleep 301"), "v5.channel.k8s.io", 20s);
    std::string out;
    while (out.find("started") == std::string::npos) {
        auto m = ws.read();
        ASSERT_TRUE(m);
        if (m->channel == 1) out += m->data;
    }
    EXPECT_EQ(sh("pgrep -fx 'sleep 301' | wc -l").out, "1\n");
    // One that ignores SIGHUP: SIGKILL 5 s later, even though crisd stops.
    WsStream deaf(sh_url(id, "trap '' HUP; echo started; exec sleep 305"), "v5.channel.k8s.io", 20s);
    for (std::string o; o.find("started") == std::string::npos;) {
        auto msg = deaf.read();
        ASSERT_TRUE(msg);
        if (msg->channel == 1) o += msg->data;
    }
    must("systemctl restart crisd.service");
    // The session is closed (no status: crisd went away) ...
    std::optional<crisd::test::WsMessage> m;
    try {
        while ((m = ws.read())) {
        }
    } catch (const std::exception&) {
        m.reset();  // a reset connection is as good as a close here
    }
    EXPECT_FALSE(m);
    // ... and the command got SIGHUP through the runtime.
    EXPECT_TRUE(wait_for([] { return sh("pgrep -fx 'sleep 301' | wc -l").out == "0\n"; }, 10s));
    EXPECT_TRUE(wait_for([] { return sh("pgrep -fx 'sleep 305' | wc -l").out == "0\n"; }, 10s))
        << "a command that ignores SIGHUP outlived crisd's stop";
    client_ = std::make_unique<CriClient>(kCriSocket);
}

// 32 MiB through stdout, byte-exact, over both protocols (flow control and
// backpressure on the way); prints the rate and the latency of a small exec.
TEST_F(Streaming, BulkOutputArrivesWhole) {
    const auto id = run("bulk", "sleep 300");
    const std::string script = "head -c 33554432 /dev/zero | tr '\\0' x";
    auto t0 = std::chrono::steady_clock::now();
    auto r = crisd::test::ws_command(sh_url(id, script), "v5.channel.k8s.io", std::nullopt, 120s);
    const double ws_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.out.size(), 33554432u);
    EXPECT_EQ(r.out.find_first_not_of('x'), std::string::npos);
    EXPECT_EQ(crisd::test::exit_code_of_status(r.status), 0) << r.status;

    crisd::test::RemoteCommandOptions o;
    o.timeout = 120s;
    t0 = std::chrono::steady_clock::now();
    const auto s = crisd::test::remote_command(sh_url(id, script), o);
    const double spdy_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(s.stdout_data.size(), 33554432u);
    EXPECT_EQ(s.exit_code, 0) << s.status_json << s.error;

    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) EXPECT_EQ(crisd::test::ws_command(sh_url(id, "true")).messages, 2);
    const double small_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 10;
    std::printf("stream: 32 MiB stdout over WebSocket %.2f s (%.0f MiB/s), over SPDY %.2f s (%.0f MiB/s); "
                "Exec+connect+`true` %.0f ms each\n",
                ws_s, 32 / ws_s, spdy_s, 32 / spdy_s, small_ms);
}

// A client that goes away mid-exec: its command is gone afterwards, even one
// that ignores SIGHUP (SIGKILL 5 s later), over both protocols. The runtime
// is only the command's foreground parent: killing it alone would leave the
// command in the container.
TEST_F(Streaming, ClientDisconnectEndsTheCommand) {
    const auto id = run("disconnect", "sleep 300");
    const auto in_container = [&](const std::string& pattern) {
        return crisd::test::ws_command(sh_url(id, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done "
                                                  "2>/dev/null | grep -c '" +
                                                      pattern + "'"))
            .out;
    };
    {
        WsStream ws(sh_url(id, "trap '' HUP; echo started; exec sleep 306"), "v5.channel.k8s.io", 20s);
        for (std::string out; out.find("started") == std::string::npos;) {
            auto m = ws.read();
            ASSERT_TRUE(m);
            if (m->channel == 1) out += m->data;
        }
    }  // gone without a word
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(in_container("sleep 30[6]"), "1\n") << "SIGHUP is ignored: alive until the SIGKILL";
    EXPECT_TRUE(wait_for([] { return sh("pgrep -fx 'sleep 306' | wc -l").out == "0\n"; }, 10s));
    EXPECT_EQ(in_container("sleep 30[6]"), "0\n");

    crisd::test::RemoteCommandOptions o;
    o.until_stdout_contains = "started";
    const auto r = crisd::test::remote_command(sh_url(id, "trap '' HUP; echo started; exec sleep 307"), o);
    EXPECT_NE(r.stdout_data.find("started"), std::string::npos);
    EXPECT_TRUE(wait_for([] { return sh("pgrep -fx 'sleep 307' | wc -l").out == "0\n"; }, 10s));
    EXPECT_EQ(in_container("sleep 30[7]"), "0\n");
}

// A process left behind holding the output pipes: the session ends after the
// grace, crisd closes its ends of the pipes at once, and the late write
// reaches nothing (it used to reach a freed Exec). crun hands crisd's pipes
// to the command; runc copies through pipes of its own and exits only when
// the leftover closes them, so the session lasts as long with runc.
TEST_F(Streaming, ProcessLeftBehindHoldingThePipes) {
    const auto id = run("leftover", "sleep 300", "crun");
    const auto pid = crisd_pid();
    const int before = pipes_of(pid);
    const auto t0 = std::chrono::steady_clock::now();
    // The leftover writes 6 s in, far after the 1 s grace whatever the load.
    const auto r = crisd::test::ws_command(sh_url(id, "(sleep 6; echo late; echo late >&2) & echo early"));
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.out, "early\n");
    EXPECT_EQ(r.status, R"({"metadata":{},"status":"Success"})");
    EXPECT_LT(took, 5000ms);
    EXPECT_EQ(pipes_of(pid), before) << "a pipe stays open in crisd while the leftover lives";
    std::this_thread::sleep_for(7000ms - (std::chrono::steady_clock::now() - t0));  // the late write happens
    EXPECT_EQ(crisd_pid(), pid);
    EXPECT_EQ(crisd::test::ws_command(sh_url(id, "echo after")).out, "after\n");
    EXPECT_EQ(pipes_of(pid), before);
}

// A slow client gets all the output, byte-exact, although the command has
// long exited while crisd waited for the client.
TEST_F(Streaming, SlowReaderGetsAllOutput) {
    const auto id = run("slow", "sleep 300");
    std::string expected;
    for (int i = 1; i <= 500000; ++i) expected += std::to_string(i) + "\n";
    WsStream ws(sh_url(id, "seq 1 500000"), "v5.channel.k8s.io", 60s);
    std::this_thread::sleep_for(3s);  // the command is done; crisd waits for us
    std::string out, status;
    while (auto m = ws.read()) {
        if (m->channel == 1) out += m->data;
        if (m->channel == 3) status += m->data;
        std::this_thread::sleep_for(20ms);  // ~1.5 MiB/s
    }
    EXPECT_EQ(out.size(), expected.size());
    EXPECT_TRUE(out == expected) << "the output differs from seq's";
    EXPECT_EQ(status, R"({"metadata":{},"status":"Success"})");

    crisd::test::RemoteCommandOptions o;
    o.timeout = 60s;
    const auto r = crisd::test::remote_command(sh_url(id, "seq 1 500000"), o);
    EXPECT_TRUE(r.stdout_data == expected) << r.stdout_data.size();
    EXPECT_EQ(r.exit_code, 0) << r.status_json;
}

// 64 MiB of stdin into a command that reads nothing for 2 s: crisd stops
// reading its client instead of queueing it all (moby/spdystream ignores
// SPDY's windows; a WebSocket has none).
TEST_F(Streaming, LargeStdinKeepsCrisdSmall) {
    const auto id = run("stdin-big", "sleep 300");
    const auto pid = crisd_pid();
    auto peak_after = [&](const std::function<void()>& fn) {
        must("echo 5 > /proc/" + pid + "/clear_refs");  // resets VmHWM
        const long rss = status_kib(pid, "VmRSS");
        fn();
        return status_kib(pid, "VmHWM") - rss;
    };
    std::string out, status;
    const long ws_growth = peak_after([&] {
        WsStream ws(exec_url(exec_req(id, {"sh", "-c", "sleep 2; wc -c"}, true, true, false)), "v5.channel.k8s.io",
                    60s);
        const std::string mib(1 << 20, 'z');
        for (int i = 0; i < 64; ++i) ws.send(0, mib);
        ws.close_channel(0);
        while (auto m = ws.read()) {
            if (m->channel == 1) out += m->data;
            if (m->channel == 3) status += m->data;
        }
    });
    EXPECT_EQ(out, "67108864\n");
    EXPECT_EQ(status, R"({"metadata":{},"status":"Success"})");
    crisd::test::RemoteCommandResult r;
    const long spdy_growth = peak_after([&] {
        crisd::test::RemoteCommandOptions o;
        o.want_stdin = true;
        o.want_stderr = false;
        o.stdin_data = std::string(32 << 20, 'z');
        o.timeout = 60s;
        r = crisd::test::remote_command(exec_url(exec_req(id, {"sh", "-c", "sleep 2; wc -c"}, true, true, false)), o);
    });
    EXPECT_EQ(r.stdout_data, "33554432\n");
    EXPECT_EQ(r.exit_code, 0) << r.status_json;
    std::printf("stream: crisd's peak RSS grew by %ld KiB for 64 MiB of stdin over WebSocket, %ld KiB for 32 MiB "
                "over SPDY\n",
                ws_growth, spdy_growth);
    EXPECT_LT(ws_growth, 24 * 1024);
    EXPECT_LT(spdy_growth, 24 * 1024);
}

// kubectl port-forward carries every connection on one SPDY session (two
// streams each): 300 at once, well past the old limit of 128 streams. The
// other end is the node's registry (a pod on the host network), a server
// that takes that many connections at once (busybox httpd does not).
TEST_F(Streaming, SpdyPortForwardManyConnectionsOnOneSession) {
    const auto pod = run_pod("pf-many", "", true);
    v1::PortForwardRequest pf;
    pf.set_pod_sandbox_id(pod);
    pf.add_port(5000);
    const auto url = client_->call(&v1::RuntimeService::Stub::PortForward, "PortForward", pf).url();
    crisd::test::PortForwardOptions o;
    o.timeout = 60s;
    const auto results = crisd::test::port_forward_many(
        url, 5000, std::vector<std::string>(300, "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"), o);
    ASSERT_EQ(results.size(), 300u);
    int ok = 0;
    for (const auto& r : results) {
        if (r.data.rfind("HTTP/1.0 200 OK", 0) == 0) ++ok;
        else ADD_FAILURE() << "data: " << r.data.substr(0, 200) << " error: " << r.error;
    }
    EXPECT_EQ(ok, 300);
}

// kubectl attach -i to a container created with stdin and stdin_once: the
// client's end of stdin reaches the container (conmon closes its stdin), the
// output arrives and the container exits 0; both protocols.
TEST_F(Streaming, AttachStdinCloseEndsAStdinOnceContainer) {
    const auto id = run("attach-once", "exec cat", "", true, false, nullptr, true);
    WsStream ws(attach_url(attach_req(id, true, true, false)), "v5.channel.k8s.io", 20s);
    ws.send(0, "one\n");
    ws.close_channel(0);
    std::string out, status;
    while (auto m = ws.read()) {
        if (m->channel == 1) out += m->data;
        if (m->channel == 3) status += m->data;
    }
    EXPECT_EQ(out, "one\n");
    EXPECT_EQ(status, R"({"metadata":{},"status":"Success"})");
    auto st = container_status(id);
    EXPECT_EQ(st.state(), v1::CONTAINER_EXITED);
    EXPECT_EQ(st.exit_code(), 0);

    const auto id2 = run("attach-once-spdy", "exec cat", "", true, false, nullptr, true);
    crisd::test::RemoteCommandOptions o;
    o.want_stdin = true;
    o.want_stderr = false;
    o.stdin_data = "two\n";
    const auto r = crisd::test::remote_command(attach_url(attach_req(id2, true, true, false)), o);
    EXPECT_EQ(r.stdout_data, "two\n");
    EXPECT_EQ(r.exit_code, 0) << r.status_json << r.error;
    EXPECT_TRUE(wait_for([&] { return container_status(id2).state() == v1::CONTAINER_EXITED; }, 5s));
    EXPECT_EQ(container_status(id2).exit_code(), 0);
}

// conmon drops an attach client that does not keep up; crisd then reports
// a failure, not Success: the container still runs.
TEST_F(Streaming, AttachDroppedByConmonIsAnError) {
    const auto id = run("attach-drop", "sleep 2; head -c 16777216 /dev/zero | tr '\\0' y; exec sleep 300");
    WsStream ws(attach_url(attach_req(id, false, true, false)), "v5.channel.k8s.io", 30s);
    std::this_thread::sleep_for(6s);  // not reading: conmon's buffer for us fills up
    std::size_t got = 0;
    std::string status;
    while (auto m = ws.read()) {
        if (m->channel == 1) got += m->data.size();
        if (m->channel == 3) status += m->data;
    }
    EXPECT_LT(got, 16777216u);
    EXPECT_NE(status.find(R"("status":"Failure")"), std::string::npos) << status;
    EXPECT_NE(status.find("crisd-conmon closed the attach connection"), std::string::npos) << status;
    EXPECT_EQ(container_status(id).state(), v1::CONTAINER_RUNNING);
}

// Much stdin through attach into a container that reads nothing for 3 s:
// nothing is dropped on the way (conmon stops reading the attach socket
// while 1 MiB waits for the container; it used to drop past 4 MiB).
TEST_F(Streaming, AttachLargeStdinArrivesWhole) {
    const auto id = run("attach-big", "sleep 3; exec wc -c", "", true, false, nullptr, true);
    WsStream ws(attach_url(attach_req(id, true, true, false)), "v5.channel.k8s.io", 60s);
    const std::string mib(1 << 20, 'a');
    for (int i = 0; i < 16; ++i) ws.send(0, mib);
    ws.close_channel(0);
    std::string out, status;
    while (auto m = ws.read()) {
        if (m->channel == 1) out += m->data;
        if (m->channel == 3) status += m->data;
    }
    EXPECT_EQ(out, "16777216\n");
    EXPECT_EQ(status, R"({"metadata":{},"status":"Success"})");
}
