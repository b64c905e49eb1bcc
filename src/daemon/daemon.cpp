#include "daemon/daemon.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <grpcpp/impl/codegen/service_type.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "crisd_build.hpp"
#include "cri/cri.hpp"
#include "image/image.hpp"
#include "image/rootfs.hpp"
#include "network/network.hpp"
#include "runtime/containers.hpp"
#include "runtime/handlers.hpp"
#include "runtime/pods.hpp"
#include "runtime/status.hpp"
#include "server/listener.hpp"
#include "server/server.hpp"
#include "status/status.hpp"
#include "stream/stream.hpp"
#include "systemd/systemd.hpp"

namespace crisd::daemon {
namespace {

void notify(const std::string& state) {
    // Harmless (returns 0) when NOTIFY_SOCKET is unset, i.e. started by hand.
    const int r = sd_notify(0, state.c_str());
    if (r < 0) spdlog::warn("sd_notify: {}", std::strerror(-r));
}

void make_dir(const std::string& path, mode_t mode) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw sys_error("creating " + path, ec.value());
    if (::chmod(path.c_str(), mode) != 0) throw_errno("setting the mode of " + path);
}

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

// What io.crisd.Daemon1 publishes, read from the services that own it.
class DaemonStatus final : public status::Provider {
public:
    DaemonStatus(const runtime::Handlers& handlers, const network::Network& network,
                 const runtime::PodManager& pods, const runtime::ContainerManager& containers,
                 const image::Images& images, const runtime::RuntimeConfigState& runtime_config,
                 const stream::StreamServer& stream)
        : handlers_(handlers), network_(network), pods_(pods), containers_(containers), images_(images),
          runtime_config_(runtime_config), stream_(stream) {}

    // The same function as the CRI Status (verbose).
    status::RuntimeStatus status() const override {
        return runtime::runtime_status(handlers_, network_, &runtime_config_);
    }
    status::Counts counts() const override {
        status::Counts c;
        c.pods = static_cast<std::uint32_t>(pods_.count());
        c.images = static_cast<std::uint32_t>(images_.count());
        for (const auto& r : containers_.list({})) {
            ++c.containers;
            if (r.state == runtime::ContainerState::Running) ++c.running_containers;
        }
        return c;
    }
    std::vector<status::ContainerRow> containers() const override {
        static const char* const kStates[] = {"CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED",
                                              "CONTAINER_UNKNOWN"};
        std::vector<status::ContainerRow> rows;
        for (const auto& r : containers_.list({}))
            rows.push_back({r.id, r.config.metadata.name, r.pod_id, kStates[static_cast<int>(r.state) & 3],
                            r.scope()});
        return rows;
    }
    std::string stream_address() const override { return stream_.address(); }

private:
    const runtime::Handlers& handlers_;
    const network::Network& network_;
    const runtime::PodManager& pods_;
    const runtime::ContainerManager& containers_;
    const image::Images& images_;
    const runtime::RuntimeConfigState& runtime_config_;
    const stream::StreamServer& stream_;
};

}  // namespace

void block_signals() {
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
}

DaemonManager::DaemonManager(config::Config cfg) : cfg_(std::move(cfg)) {}

int DaemonManager::run() {
    const auto started_at = std::chrono::system_clock::now();
    make_dir(cfg_.root, 0700);
    make_dir(cfg_.runroot, 0755);

    const char* path_env = std::getenv("PATH");
    runtime::Handlers handlers(cfg_.runtime,
                               path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    network::Network network(cfg_.network, cfg_.root + "/network");
    network.watch();
    image::Images images(image::Options{
        .root = cfg_.root + "/images",
        .registries_conf = cfg_.image.registries_conf,
        .global_auth_file = cfg_.image.global_auth_file,
        .signature_policy = cfg_.image.signature_policy,
        .pull_progress_timeout = std::chrono::seconds(cfg_.image.pull_progress_timeout),
        .connect_timeout = std::chrono::seconds(cfg_.image.registry_connect_timeout),
        .max_parallel_downloads = static_cast<int>(cfg_.image.max_parallel_downloads),
        .progress_log_interval = std::chrono::seconds(5)});
    image::Rootfs rootfs(images, cfg_.root + "/rootfs");
    // Connects to the system bus on first use: only a pod with a slice needs it.
    const auto systemd_manager = systemd::make_manager();
    runtime::PodOptions pod_options;
    pod_options.root = cfg_.root;
    pod_options.runroot = cfg_.runroot;
    pod_options.shm_size = cfg_.runtime.pod_shm_size;
    runtime::PodManager pods(pod_options, handlers, network, *systemd_manager);
    pods.load();
    runtime::ContainerManager containers(runtime::ContainerOptions{cfg_.root, cfg_.runroot, "", cfg_.runtime.seccomp_profile}, handlers, pods,
                                         images, rootfs, *systemd_manager);
    containers.load();
    runtime::RuntimeConfigState runtime_config;
    stream::StreamServer stream(
        stream::Options{.address = cfg_.api.stream_address,
                        .port = cfg_.api.stream_port,
                        .tls = cfg_.api.stream_enable_tls,
                        .tls_cert = cfg_.api.stream_tls_cert,
                        .tls_key = cfg_.api.stream_tls_key,
                        .idle_timeout = std::chrono::seconds(cfg_.api.stream_idle_timeout),
                        .token_ttl = std::chrono::seconds(cfg_.api.stream_token_ttl)},
        containers, pods);
    stream.start();
    const cri::Backends backends{.handlers = handlers,
                                 .network = network,
                                 .images = &images,
                                 .rootfs = &rootfs,
                                 .pods = &pods,
                                 .containers = &containers,
                                 .runtime_config = &runtime_config,
                                 .stream = &stream};
    auto runtime_service = cri::make_runtime_service(backends);
    auto image_service = cri::make_image_service(backends);

    server::GrpcServer grpc({runtime_service.get(), image_service.get()},
                            {static_cast<int>(cfg_.api.grpc_max_send_msg_size),
                             static_cast<int>(cfg_.api.grpc_max_recv_msg_size)});

    auto inherited = server::Listener::from_systemd();
    const bool activated = inherited.has_value();
    server::Listener listener =
        activated ? std::move(*inherited) : server::Listener::bind(cfg_.api.listen);
    const std::string where = listener.path();
    grpc.serve(std::move(listener));

    const auto runtime_ready = handlers.readiness();
    if (!runtime_ready.status) spdlog::warn("runtime not ready: {}", runtime_ready.message);
    spdlog::info("crisd {} serving CRI on {}{}", CRISD_VERSION, where,
                 activated ? " (socket from systemd)" : "");
    notify("READY=1\nSTATUS=Serving CRI on " + where);

    // The status object comes after the CRI: the bus is optional. Without a
    // system bus (or the bus policy) it warns and keeps retrying in the
    // background; the CRI is served either way.
    DaemonStatus status_provider(handlers, network, pods, containers, images, runtime_config, stream);
    auto status_service = std::make_unique<status::Service>(
        status_provider, status::Options{CRISD_VERSION, started_at, std::chrono::seconds(5), ""});
    pods.set_on_change([svc = status_service.get()] { svc->refresh(); });
    containers.set_on_change([svc = status_service.get()] { svc->refresh(); });
    // ContainerStarted / ContainerExited signals, from the container events.
    std::atomic<bool> signals_stop{false};
    std::thread signals([&, events = containers.subscribe(), svc = status_service.get()] {
        while (!signals_stop) {
            const auto e = events->next(std::chrono::milliseconds(200));
            if (!e) continue;
            if (e->type == runtime::ContainerEvent::Type::Started)
                svc->container_started(e->container.id);
            else if (e->type == runtime::ContainerEvent::Type::Stopped)
                svc->container_exited(e->container.id, e->container.exit_code);
        }
    });

    sigset_t set = stop_signals();
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    spdlog::info("received {}, draining requests (up to {} s)", strsignal(sig),
                 cfg_.api.shutdown_timeout);
    notify("STOPPING=1\nSTATUS=Draining requests");
    pods.set_on_change(nullptr);
    containers.set_on_change(nullptr);
    signals_stop = true;
    signals.join();
    status_service.reset();  // gives the bus name up first
    // Drain: no new connections, then wait for the calls being served (not for
    // idle connections, which gRPC would otherwise hold open for seconds).
    grpc.stop_accepting();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(cfg_.api.shutdown_timeout);
    while (cri::calls_in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (const int left = cri::calls_in_flight(); left > 0)
        spdlog::warn("cancelling {} request(s) still running after {} s", left,
                     cfg_.api.shutdown_timeout);
    // A short grace lets clients see the GOAWAY and reconnect cleanly to the next crisd.
    grpc.shutdown(std::chrono::milliseconds(500));
    stream.stop();  // open exec/attach/port-forward sessions end; their commands get SIGHUP
    spdlog::info("crisd stopped");
    return 0;
}

}  // namespace crisd::daemon
