// crisd-bench-pods: the workload driver of tests/bench/pods. It talks CRI
// through the tests' CriClient, so crisd and containerd get the identical
// client, and prints its figures as JSON on stdout (progress on stderr).
//
//   crisd-bench-pods run --socket S --image REF [--pods N] [--scale M] ...
//       pulls REF, runs N pods of one container one after the other (each RPC
//       timed), tears them down, then runs M pods P at a time and times
//       ListContainers, ContainerStatus, ListPodSandbox and PodSandboxStatus
//       with them running; reads the runtime daemon's and the container
//       monitors' memory from /proc.
//   crisd-bench-pods cleanup --socket S
//       removes every pod this program made (label crisd-bench=true).
//   crisd-bench-pods floor --bundle DIR [--count N] [--systemd-cgroup]
//       `runc run -d` of the same bundle N times, then kill (SIGTERM), wait
//       and delete each: the floor that a runtime cannot go below.
//
// A benchmark, not a test: it fails only when an RPC fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cri_client.hpp"

namespace {

namespace v1 = ::runtime::v1;
namespace fs = std::filesystem;
using crisd::test::CallError;
using crisd::test::CriClient;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kLabel = "crisd-bench";
// A container that ends at once on SIGTERM, so that StopContainer measures the
// graceful path (signal, exit, exit status) and not a stop timeout.
const std::vector<std::string> kCommand = {"sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"};

// Seconds with millisecond resolution: what the figures can tell.
double secs(double s) { return std::round(s * 1000.0) / 1000.0; }

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void progress(const std::string& line) { std::cerr << "crisd-bench-pods: " << line << std::endl; }

// ---- latency samples ---------------------------------------------------------

class Samples {
public:
    void add(double ms) {
        std::lock_guard lock(mutex_);
        ms_.push_back(ms);
    }
    json summary() const {
        std::lock_guard lock(mutex_);
        std::vector<double> v = ms_;
        std::sort(v.begin(), v.end());
        json j;
        j["n"] = v.size();
        if (v.empty()) return j;
        double sum = 0;
        for (double x : v) sum += x;
        j["p50_ms"] = round3(rank(v, 50));
        j["p99_ms"] = round3(rank(v, 99));
        j["mean_ms"] = round3(sum / static_cast<double>(v.size()));
        j["max_ms"] = round3(v.back());
        return j;
    }

private:
    // Nearest rank: with 20 samples the p99 is the largest one.
    static double rank(const std::vector<double>& sorted, double p) {
        const auto n = sorted.size();
        auto idx = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
        idx = std::clamp<std::size_t>(idx, 1, n);
        return sorted[idx - 1];
    }
    static double round3(double x) { return std::round(x * 1000.0) / 1000.0; }

    mutable std::mutex mutex_;
    std::vector<double> ms_;
};

class Timings {
public:
    Samples& operator[](const std::string& rpc) {
        std::lock_guard lock(mutex_);
        return by_rpc_[rpc];
    }
    json summary() {
        std::lock_guard lock(mutex_);
        json j = json::object();
        for (const auto& [rpc, s] : by_rpc_) j[rpc] = s.summary();
        return j;
    }

private:
    std::mutex mutex_;
    std::map<std::string, Samples> by_rpc_;
};

// ---- /proc -------------------------------------------------------------------

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The value in kB of "Key:   123 kB" in a /proc file, or -1.
long proc_kb(const fs::path& file, const std::string& key) {
    std::istringstream in(slurp(file));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) != 0) continue;
        return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
    }
    return -1;
}

struct Memory {
    long rss_kb = 0;
    long pss_kb = 0;
    long threads = 0;
    int processes = 0;
};

Memory process_memory(pid_t pid) {
    const fs::path dir = fs::path("/proc") / std::to_string(pid);
    Memory m;
    m.rss_kb = proc_kb(dir / "status", "VmRSS");
    m.pss_kb = proc_kb(dir / "smaps_rollup", "Pss");
    m.threads = proc_kb(dir / "status", "Threads");
    m.processes = m.rss_kb >= 0 ? 1 : 0;
    return m;
}

// Every process whose comm starts with `prefix` (comm is cut at 15 characters:
// containerd-shim-runc-v2 shows as "containerd-shim").
Memory monitors_memory(const std::string& prefix) {
    Memory total;
    for (const auto& e : fs::directory_iterator("/proc")) {
        const std::string name = e.path().filename();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::string comm = slurp(e.path() / "comm");
        if (!comm.empty() && comm.back() == '\n') comm.pop_back();
        if (comm.rfind(prefix, 0) != 0) continue;
        const Memory m = process_memory(static_cast<pid_t>(std::stol(name)));
        if (m.processes == 0) continue;  // gone meanwhile
        total.rss_kb += m.rss_kb;
        total.pss_kb += std::max(0L, m.pss_kb);
        total.threads += m.threads;
        ++total.processes;
    }
    return total;
}

json to_json(const Memory& m) {
    return json{{"processes", m.processes}, {"rss_kb", m.rss_kb}, {"pss_kb", m.pss_kb},
                {"threads", m.threads}};
}

// CPU seconds (user + system) that a process has used.
double cpu_seconds(pid_t pid) {
    const std::string stat = slurp(fs::path("/proc") / std::to_string(pid) / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    // Fields after the comm start at 3 (state); utime and stime are 14 and 15.
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// ---- the CRI workload --------------------------------------------------------

struct Options {
    std::string socket;
    std::string image = "127.0.0.1:5000/busybox:latest";
    std::vector<std::string> prepull;  // pulled before anything is timed (containerd's sandbox image)
    std::string runtime_handler;
    int pods = 20;
    int scale = 100;
    int parallel = 10;
    int calls = 500;
    int warmup = 1;
    pid_t daemon_pid = 0;
    std::string monitor_comm;
    std::string tag = "r";
    int stop_timeout = 10;
    bool host_network = false;
};

struct Pod {
    std::string name;
    v1::PodSandboxConfig config;
    std::string id;
    std::string container;
};

class Workload {
public:
    explicit Workload(const Options& o) : o_(o), client_(o.socket, std::chrono::seconds(300)) {}

    json run();

private:
    Pod make_pod(const std::string& name) const {
        Pod p;
        p.name = name;
        // A '-' in a slice name means a level of slices: the uid has none.
        std::string uid = "bench_" + o_.tag + "_" + name;
        std::replace(uid.begin(), uid.end(), '-', '_');
        auto& c = p.config;
        c.mutable_metadata()->set_name(name);
        c.mutable_metadata()->set_namespace_("crisd-bench");
        c.mutable_metadata()->set_uid(uid);
        if (!o_.host_network) c.set_hostname(name);  // a host-network pod has the node's
        c.set_log_directory("/var/log/pods/crisd-bench_" + name + "_" + uid);
        (*c.mutable_labels())[kLabel] = "true";
        // The kubelet always sends one (ClusterFirst): the runtime writes resolv.conf from it.
        auto* dns = c.mutable_dns_config();
        dns->add_servers("10.96.0.10");
        for (const char* s : {"crisd-bench.svc.cluster.local", "svc.cluster.local", "cluster.local"}) dns->add_searches(s);
        dns->add_options("ndots:5");
        auto* linux = c.mutable_linux();
        // The pod's slice, as the kubelet with the systemd cgroup driver names it.
        linux->set_cgroup_parent("kubepods-besteffort-pod" + uid + ".slice");
        auto* ns = linux->mutable_security_context()->mutable_namespace_options();
        ns->set_network(o_.host_network ? v1::NODE : v1::POD);
        ns->set_pid(v1::CONTAINER);
        ns->set_ipc(v1::POD);
        return p;
    }

    template <typename Req, typename Resp>
    Resp timed(Samples& s, grpc::Status (v1::RuntimeService::Stub::*m)(grpc::ClientContext*, const Req&, Resp*),
               const char* rpc, const Req& req) {
        const auto t0 = Clock::now();
        Resp resp = client_.call(m, rpc, req);
        s.add(ms_since(t0));
        return resp;
    }

    // RunPodSandbox, CreateContainer, StartContainer.
    void start_pod(Pod& p, Timings& t) {
        v1::RunPodSandboxRequest run;
        *run.mutable_config() = p.config;
        run.set_runtime_handler(o_.runtime_handler);
        p.id = timed(t["RunPodSandbox"], &v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", run)
                   .pod_sandbox_id();
        v1::CreateContainerRequest create;
        create.set_pod_sandbox_id(p.id);
        *create.mutable_sandbox_config() = p.config;
        auto* c = create.mutable_config();
        c->mutable_metadata()->set_name("sleep");
        c->mutable_image()->set_image(o_.image);
        c->add_command(kCommand[0]);
        for (std::size_t i = 1; i < kCommand.size(); ++i) c->add_args(kCommand[i]);
        c->set_log_path("sleep/0.log");
        (*c->mutable_labels())[kLabel] = "true";
        auto* ns = c->mutable_linux()->mutable_security_context()->mutable_namespace_options();
        ns->set_network(o_.host_network ? v1::NODE : v1::POD);
        ns->set_pid(v1::CONTAINER);
        ns->set_ipc(v1::POD);
        p.container = timed(t["CreateContainer"], &v1::RuntimeService::Stub::CreateContainer,
                            "CreateContainer", create)
                          .container_id();
        v1::StartContainerRequest start;
        start.set_container_id(p.container);
        timed(t["StartContainer"], &v1::RuntimeService::Stub::StartContainer, "StartContainer", start);
    }

    // StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox: the kubelet's order.
    void stop_pod(const Pod& p, Timings& t) {
        v1::StopContainerRequest stop;
        stop.set_container_id(p.container);
        stop.set_timeout(o_.stop_timeout);
        timed(t["StopContainer"], &v1::RuntimeService::Stub::StopContainer, "StopContainer", stop);
        v1::RemoveContainerRequest rm;
        rm.set_container_id(p.container);
        timed(t["RemoveContainer"], &v1::RuntimeService::Stub::RemoveContainer, "RemoveContainer", rm);
        v1::StopPodSandboxRequest stop_pod;
        stop_pod.set_pod_sandbox_id(p.id);
        timed(t["StopPodSandbox"], &v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop_pod);
        v1::RemovePodSandboxRequest rm_pod;
        rm_pod.set_pod_sandbox_id(p.id);
        timed(t["RemovePodSandbox"], &v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm_pod);
    }

    // Runs fn(i) for i in [0, n) on `workers` threads; returns the wall time in seconds.
    template <typename F>
    double in_parallel(int n, int workers, F&& fn) {
        std::atomic<int> next{0};
        std::mutex err_mutex;
        std::optional<std::string> error;
        const auto t0 = Clock::now();
        std::vector<std::thread> threads;
        for (int w = 0; w < std::max(1, workers); ++w) {
            threads.emplace_back([&] {
                for (int i = next++; i < n; i = next++) {
                    try {
                        fn(i);
                    } catch (const std::exception& e) {
                        std::lock_guard lock(err_mutex);
                        if (!error) error = e.what();
                        next = n;  // the others stop taking work
                    }
                }
            });
        }
        for (auto& th : threads) th.join();
        if (error) throw std::runtime_error(*error);
        return ms_since(t0) / 1000.0;
    }

    json memory() const {
        json j;
        if (o_.daemon_pid > 0) j["daemon"] = to_json(process_memory(o_.daemon_pid));
        if (!o_.monitor_comm.empty()) j["monitors"] = to_json(monitors_memory(o_.monitor_comm));
        return j;
    }

    double daemon_cpu() const { return o_.daemon_pid > 0 ? cpu_seconds(o_.daemon_pid) : 0.0; }

    std::string pull(const std::string& ref, bool remove_first, double* seconds) {
        if (remove_first) {
            v1::ImageStatusRequest st;
            st.mutable_image()->set_image(ref);
            const auto status = client_.call(&v1::ImageService::Stub::ImageStatus, "ImageStatus", st);
            if (status.has_image()) {
                v1::RemoveImageRequest rm;
                rm.mutable_image()->set_image(ref);
                client_.call(&v1::ImageService::Stub::RemoveImage, "RemoveImage", rm);
            }
        }
        v1::PullImageRequest req;
        req.mutable_image()->set_image(ref);
        const auto t0 = Clock::now();
        auto resp = client_.call(&v1::ImageService::Stub::PullImage, "PullImage", req);
        if (seconds) *seconds = ms_since(t0) / 1000.0;
        return resp.image_ref();
    }

    Options o_;
    CriClient client_;
};

json Workload::run() {
    json out;
    const auto version = client_.version();
    out["runtime"] = version.runtime_name();
    out["runtime_version"] = version.runtime_version();
    out["daemon_pid"] = o_.daemon_pid;
    out["pods"] = o_.pods;
    out["network"] = o_.host_network ? "host" : "pod (CNI)";

    // The timed pull first, from an empty store: the pre-pulled images share its layer.
    double pull_s = 0;
    pull(o_.image, true, &pull_s);
    for (const auto& ref : o_.prepull) pull(ref, false, nullptr);
    out["pull"] = json{{"image", o_.image}, {"seconds", secs(pull_s)}};
    progress(out["runtime"].get<std::string>() + ": pulled " + o_.image + " in " + std::to_string(pull_s) + " s");

    // Warm-up pods (not counted): the first pod of a node creates the CNI bridge,
    // the pod slices' parents and the runtime's lazily made state.
    Timings discard;
    for (int i = 0; i < o_.warmup; ++i) {
        Pod p = make_pod("warmup-" + std::to_string(i));
        start_pod(p, discard);
        stop_pod(p, discard);
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    out["memory_idle"] = memory();

    // N pods, one after the other, each RPC timed.
    Timings seq;
    std::vector<Pod> pods;
    for (int i = 0; i < o_.pods; ++i) pods.push_back(make_pod("seq-" + std::to_string(i)));
    Samples per_pod_start, per_pod_stop;
    double cpu0 = daemon_cpu();
    auto t0 = Clock::now();
    for (auto& p : pods) {
        const auto s0 = Clock::now();
        start_pod(p, seq);
        per_pod_start.add(ms_since(s0));
    }
    const double run_s = ms_since(t0) / 1000.0;
    const double run_cpu = daemon_cpu() - cpu0;
    progress("ran " + std::to_string(o_.pods) + " pods in " + std::to_string(run_s) + " s");
    cpu0 = daemon_cpu();
    t0 = Clock::now();
    for (const auto& p : pods) {
        const auto s0 = Clock::now();
        stop_pod(p, seq);
        per_pod_stop.add(ms_since(s0));
    }
    const double teardown_s = ms_since(t0) / 1000.0;
    const double teardown_cpu = daemon_cpu() - cpu0;
    out["sequential"] = json{{"pods", o_.pods},
                             {"run_s", secs(run_s)},
                             {"teardown_s", secs(teardown_s)},
                             {"daemon_cpu_run_s", secs(run_cpu)},
                             {"daemon_cpu_teardown_s", secs(teardown_cpu)},
                             {"pod_start", per_pod_start.summary()},
                             {"pod_stop", per_pod_stop.summary()},
                             {"rpc", seq.summary()}};

    // M pods, P at a time; then the read-only RPCs and memory with them all running.
    if (o_.scale > 0) {
        Timings par;
        std::vector<Pod> many;
        for (int i = 0; i < o_.scale; ++i) many.push_back(make_pod("scale-" + std::to_string(i)));
        cpu0 = daemon_cpu();
        const double scale_run_s = in_parallel(o_.scale, o_.parallel, [&](int i) { start_pod(many[i], par); });
        const double scale_run_cpu = daemon_cpu() - cpu0;
        progress("ran " + std::to_string(o_.scale) + " pods, " + std::to_string(o_.parallel) +
                 " at a time, in " + std::to_string(scale_run_s) + " s");
        std::this_thread::sleep_for(std::chrono::seconds(3));

        v1::ListContainersRequest lc;
        const auto listed = client_.call(&v1::RuntimeService::Stub::ListContainers, "ListContainers", lc);
        int running = 0;
        for (const auto& c : listed.containers())
            if (c.state() == v1::CONTAINER_RUNNING && c.labels().count(kLabel)) ++running;
        if (running != o_.scale)
            throw std::runtime_error("expected " + std::to_string(o_.scale) + " running containers, ListContainers shows " +
                                     std::to_string(running));

        Timings reads;
        for (int i = 0; i < o_.calls; ++i)
            timed(reads["ListContainers"], &v1::RuntimeService::Stub::ListContainers, "ListContainers", lc);
        for (int i = 0; i < o_.calls; ++i) {
            v1::ContainerStatusRequest cs;
            cs.set_container_id(many[static_cast<std::size_t>(i % o_.scale)].container);
            timed(reads["ContainerStatus"], &v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", cs);
        }
        v1::ListPodSandboxRequest lp;
        for (int i = 0; i < o_.calls; ++i)
            timed(reads["ListPodSandbox"], &v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", lp);
        for (int i = 0; i < o_.calls; ++i) {
            v1::PodSandboxStatusRequest ps;
            ps.set_pod_sandbox_id(many[static_cast<std::size_t>(i % o_.scale)].id);
            timed(reads["PodSandboxStatus"], &v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", ps);
        }
        const json loaded = memory();

        cpu0 = daemon_cpu();
        const double scale_teardown_s = in_parallel(o_.scale, o_.parallel, [&](int i) { stop_pod(many[i], par); });
        const double scale_teardown_cpu = daemon_cpu() - cpu0;
        progress("tore them down in " + std::to_string(scale_teardown_s) + " s");
        out["scale"] = json{{"pods", o_.scale},
                            {"parallel", o_.parallel},
                            {"calls", o_.calls},
                            {"run_s", secs(scale_run_s)},
                            {"teardown_s", secs(scale_teardown_s)},
                            {"daemon_cpu_run_s", secs(scale_run_cpu)},
                            {"daemon_cpu_teardown_s", secs(scale_teardown_cpu)},
                            {"rpc", par.summary()},
                            {"reads", reads.summary()}};
        out["memory_loaded"] = loaded;
        std::this_thread::sleep_for(std::chrono::seconds(2));
        out["memory_after"] = memory();
    }
    return out;
}

// Removes every pod labelled crisd-bench=true (and its containers); prints how many.
// What is gone meanwhile (NOT_FOUND) is no error: something else removed it.
int cleanup(const std::string& socket) {
    CriClient client(socket, std::chrono::seconds(120));
    auto tolerate = [](auto&& fn) {
        try {
            fn();
        } catch (const CallError& e) {
            if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
        }
    };
    v1::ListPodSandboxRequest lp;
    (*lp.mutable_filter()->mutable_label_selector())[kLabel] = "true";
    const auto pods = client.call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", lp);
    int removed = 0;
    for (const auto& pod : pods.items()) {
        v1::ListContainersRequest lc;
        lc.mutable_filter()->set_pod_sandbox_id(pod.id());
        const auto ctrs = client.call(&v1::RuntimeService::Stub::ListContainers, "ListContainers", lc);
        for (const auto& c : ctrs.containers()) {
            v1::StopContainerRequest stop;
            stop.set_container_id(c.id());
            stop.set_timeout(0);
            tolerate([&] { client.call(&v1::RuntimeService::Stub::StopContainer, "StopContainer", stop); });
            v1::RemoveContainerRequest rm;
            rm.set_container_id(c.id());
            tolerate([&] { client.call(&v1::RuntimeService::Stub::RemoveContainer, "RemoveContainer", rm); });
        }
        v1::StopPodSandboxRequest stop;
        stop.set_pod_sandbox_id(pod.id());
        tolerate([&] { client.call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop); });
        v1::RemovePodSandboxRequest rm;
        rm.set_pod_sandbox_id(pod.id());
        tolerate([&] { client.call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm); });
        ++removed;
    }
    progress("cleanup: removed " + std::to_string(removed) + " pods from " + socket);
    return 0;
}

// ---- the floor: bare runc ------------------------------------------------------

// Runs argv with stdin and stdout on /dev/null and stderr into `errfile` (runc's
// errors; never our own stderr, which a detached container would keep open),
// and waits; returns the exit status (or -1).
int spawn(const std::vector<std::string>& argv, const fs::path& errfile) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        const int null = open("/dev/null", O_RDWR);
        const int err = open(errfile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (null < 0 || err < 0) _exit(126);
        dup2(null, 0);
        dup2(null, 1);
        dup2(err, 2);
        execv(args[0], args.data());
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct FloorOptions {
    std::string runc = "/usr/sbin/runc";
    std::string root = "/run/crisd-bench/runc";
    std::string bundle;
    int count = 20;
    bool systemd_cgroup = false;
};

json floor(const FloorOptions& o) {
    // Each container's init is reparented to this process when `runc run -d`
    // exits, so it can be waited for after SIGTERM, as a monitor does.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) throw std::runtime_error("PR_SET_CHILD_SUBREAPER failed");
    const fs::path tmpl = fs::path(o.bundle) / "config.json";
    json spec = json::parse(slurp(tmpl));
    const fs::path rootfs = fs::absolute(fs::path(o.bundle) / spec["root"]["path"].get<std::string>());
    const std::string driver = o.systemd_cgroup ? "systemd" : "cgroupfs";
    const std::string prefix = "bench-floor-" + driver + "-";

    std::vector<std::string> ids;
    std::vector<fs::path> bundles;
    for (int i = 0; i < o.count; ++i) {
        const std::string id = prefix + std::to_string(i);
        const fs::path dir = fs::path(o.bundle).parent_path() / id;
        fs::create_directories(dir);
        json s = spec;
        s["root"]["path"] = rootfs.string();
        s["linux"]["cgroupsPath"] = o.systemd_cgroup ? "system.slice:crisd-bench-floor:" + id : "/crisd-bench-floor/" + id;
        std::ofstream(dir / "config.json") << s.dump();
        ids.push_back(id);
        bundles.push_back(dir);
    }
    std::vector<std::string> base = {o.runc, "--root", o.root};
    if (o.systemd_cgroup) base.push_back("--systemd-cgroup");
    auto cmd = [&](std::vector<std::string> args) {
        std::vector<std::string> v = base;
        v.insert(v.end(), args.begin(), args.end());
        return v;
    };

    const fs::path errfile = fs::path(o.bundle).parent_path() / "runc-errors.log";
    auto must = [&](const std::vector<std::string>& args, const std::string& id) {
        if (spawn(cmd(args), errfile) == 0) return;
        throw std::runtime_error("runc " + args[0] + " " + id + " failed: " + slurp(errfile));
    };

    Samples start, stop;
    std::vector<pid_t> pids;
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto s0 = Clock::now();
        const fs::path pidfile = bundles[i] / "pid";
        must({"run", "-d", "--pid-file", pidfile, "--bundle", bundles[i], ids[i]}, ids[i]);
        start.add(ms_since(s0));
        pids.push_back(static_cast<pid_t>(std::stol(slurp(pidfile))));
    }
    const double run_s = ms_since(t0) / 1000.0;
    t0 = Clock::now();
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto s0 = Clock::now();
        must({"kill", ids[i], "TERM"}, ids[i]);
        int status = 0;
        while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
        }
        must({"delete", ids[i]}, ids[i]);
        stop.add(ms_since(s0));
    }
    const double teardown_s = ms_since(t0) / 1000.0;
    for (const auto& dir : bundles) fs::remove_all(dir);
    fs::remove(errfile);
    progress("runc floor (" + driver + "): " + std::to_string(o.count) + " containers in " + std::to_string(run_s) + " s");
    return json{{"cgroup_driver", driver}, {"containers", o.count}, {"run_s", secs(run_s)},
                {"teardown_s", secs(teardown_s)}, {"start", start.summary()}, {"stop", stop.summary()}};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"crisd-bench-pods: the CRI workload of tests/bench/pods", "crisd-bench-pods"};
    Options o;
    auto* run = app.add_subcommand("run", "Time the pod workload against one CRI runtime (JSON on stdout)");
    run->add_option("-s,--socket", o.socket, "CRI socket")->required();
    run->add_option("--image", o.image, "container image")->capture_default_str();
    run->add_option("--prepull", o.prepull, "images to pull before anything is timed");
    run->add_option("--runtime-handler", o.runtime_handler, "CRI runtime handler");
    run->add_option("--pods", o.pods, "pods run one after the other")->capture_default_str();
    run->add_option("--scale", o.scale, "pods running for the list/status/memory figures (0: skip)")
        ->capture_default_str();
    run->add_option("--parallel", o.parallel, "pods started at once in the scale phase")->capture_default_str();
    run->add_option("--calls", o.calls, "calls of each read-only RPC")->capture_default_str();
    run->add_option("--warmup", o.warmup, "pods run and removed before timing")->capture_default_str();
    run->add_option("--daemon-pid", o.daemon_pid, "PID of the runtime daemon (memory, CPU)");
    run->add_option("--monitor-comm", o.monitor_comm, "comm prefix of the per-container monitors");
    run->add_option("--tag", o.tag, "tag in pod uids (a slice name part: no '-')")->capture_default_str();
    run->add_option("--stop-timeout", o.stop_timeout, "StopContainer timeout, seconds")->capture_default_str();
    run->add_flag("--host-network", o.host_network, "pods in the node's network namespace (no CNI)");
    std::string cleanup_socket;
    auto* clean = app.add_subcommand("cleanup", "Remove every pod labelled crisd-bench=true");
    clean->add_option("-s,--socket", cleanup_socket, "CRI socket")->required();
    FloorOptions fo;
    auto* fl = app.add_subcommand("floor", "Time bare `runc run -d` of a bundle (JSON on stdout)");
    fl->add_option("--bundle", fo.bundle, "OCI bundle (its config.json is the template)")->required();
    fl->add_option("--runc", fo.runc, "runc binary")->capture_default_str();
    fl->add_option("--root", fo.root, "runc --root")->capture_default_str();
    fl->add_option("--count", fo.count, "containers")->capture_default_str();
    fl->add_flag("--systemd-cgroup", fo.systemd_cgroup, "runc --systemd-cgroup");
    app.require_subcommand(1);
    CLI11_PARSE(app, argc, argv);

    try {
        if (clean->parsed()) return cleanup(cleanup_socket);
        const json out = run->parsed() ? Workload(o).run() : floor(fo);
        std::cout << out.dump(2) << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crisd-bench-pods: %s\n", e.what());
        return 1;
    }
}
