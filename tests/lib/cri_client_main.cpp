// cri-client: asks a CRI runtime for its version or status, or pulls, lists
// and removes images, e.g.
//   cri-client --socket /run/crisd-nodes/crisd/crisd.sock version
//   cri-client pull 127.0.0.1:5000/busybox
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>

#include "cri_client.hpp"

namespace {

namespace v1 = ::runtime::v1;

// The README's demo: a pod with one container that prints a few lines, run
// through the CRI like the kubelet would; leaves the pod for a look around.
int demo(crisd::test::CriClient& client, const std::string& image) {
    // A demo pod from an earlier run goes first.
    v1::ListPodSandboxRequest list;
    (*list.mutable_filter()->mutable_label_selector())["crisd-demo"] = "true";
    const auto old = client.call(&v1::RuntimeService::Stub::ListPodSandbox, "ListPodSandbox", list);
    for (const auto& pod : old.items()) {
        v1::StopPodSandboxRequest stop;
        stop.set_pod_sandbox_id(pod.id());
        client.call(&v1::RuntimeService::Stub::StopPodSandbox, "StopPodSandbox", stop);
        v1::RemovePodSandboxRequest rm;
        rm.set_pod_sandbox_id(pod.id());
        client.call(&v1::RuntimeService::Stub::RemovePodSandbox, "RemovePodSandbox", rm);
    }

    v1::PullImageRequest pull;
    pull.mutable_image()->set_image(image);
    const auto ref = client.call(&v1::ImageService::Stub::PullImage, "PullImage", pull).image_ref();
    std::cout << "pulled " << image << " as " << ref << "\n";

    v1::PodSandboxConfig pod;
    pod.mutable_metadata()->set_name("crisd-demo");
    pod.mutable_metadata()->set_namespace_("default");
    pod.mutable_metadata()->set_uid("crisd-demo-uid");
    pod.set_hostname("crisd-demo");
    pod.set_log_directory("/var/log/pods/default_crisd-demo_crisd-demo-uid");
    (*pod.mutable_labels())["crisd-demo"] = "true";
    pod.mutable_linux()->set_cgroup_parent("kubepods-besteffort-podcrisd_demo.slice");
    v1::RunPodSandboxRequest run;
    *run.mutable_config() = pod;
    const auto pod_id = client.call(&v1::RuntimeService::Stub::RunPodSandbox, "RunPodSandbox", run).pod_sandbox_id();
    v1::PodSandboxStatusRequest pst;
    pst.set_pod_sandbox_id(pod_id);
    const auto pod_status = client.call(&v1::RuntimeService::Stub::PodSandboxStatus, "PodSandboxStatus", pst);
    std::cout << "pod " << pod_id << " runs, IP " << pod_status.status().network().ip() << "\n";

    v1::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod_id);
    *create.mutable_sandbox_config() = pod;
    auto* c = create.mutable_config();
    c->mutable_metadata()->set_name("hello");
    c->mutable_image()->set_image(ref);
    c->add_command("sh");
    c->add_args("-c");
    c->add_args("echo hello from crisd; echo \"I am $(id -un) on $(hostname), $(ip -4 -o addr show eth0 | awk '{print $4}')\"; "
                "echo to stderr >&2; cat /proc/self/cgroup | grep name=systemd");
    c->set_log_path("hello/0.log");
    const auto id = client.call(&v1::RuntimeService::Stub::CreateContainer, "CreateContainer", create).container_id();
    v1::StartContainerRequest start;
    start.set_container_id(id);
    client.call(&v1::RuntimeService::Stub::StartContainer, "StartContainer", start);
    std::cout << "container " << id << " started\n";

    v1::ContainerStatusRequest cst;
    cst.set_container_id(id);
    v1::ContainerStatusResponse status;
    for (int i = 0; i < 300; ++i) {
        status = client.call(&v1::RuntimeService::Stub::ContainerStatus, "ContainerStatus", cst);
        if (status.status().state() == v1::CONTAINER_EXITED) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cout << "container exited with " << status.status().exit_code() << " ("
              << status.status().reason() << ")\n\n"
              << "its CRI log file " << status.status().log_path() << ":\n";
    std::ifstream log(status.status().log_path());
    std::cout << log.rdbuf() << "\n";
    std::cout << "look further (inside the node):\n"
              << "  journalctl -u crisd-" << id << ".scope\n"
              << "  systemctl status kubepods-besteffort-podcrisd_demo.slice\n"
              << "  busctl get-property io.crisd.Daemon1 /io/crisd/Daemon1 io.crisd.Daemon1 Pods Containers\n";
    return status.status().exit_code() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cri-client: a small CRI v1 client (crisd's test tool)", "cri-client"};
    std::string socket = "/run/crisd/crisd.sock";
    app.add_option("-s,--socket", socket, "CRI socket path")->capture_default_str();
    bool verbose = false;
    app.add_subcommand("version", "RuntimeService.Version");
    auto* status_cmd = app.add_subcommand("status", "RuntimeService.Status");
    status_cmd->add_flag("-v,--verbose", verbose, "ask for verbose info");
    std::string image;
    app.add_subcommand("pull", "ImageService.PullImage")->add_option("image", image)->required();
    app.add_subcommand("rmi", "ImageService.RemoveImage")->add_option("image", image)->required();
    app.add_subcommand("images", "ImageService.ListImages");
    std::string demo_image = "127.0.0.1:5000/busybox:latest";
    app.add_subcommand("demo", "Run a demo pod with one container and show its output")
        ->add_option("--image", demo_image, "image of the demo container")
        ->capture_default_str();
    app.require_subcommand(1);
    CLI11_PARSE(app, argc, argv);

    try {
        const bool image_cmd = app.got_subcommand("pull") || app.got_subcommand("rmi") ||
                               app.got_subcommand("images") || app.got_subcommand("demo");
        crisd::test::CriClient client(socket, std::chrono::seconds(image_cmd ? 1800 : 30));
        google::protobuf::util::JsonPrintOptions opts;
        opts.add_whitespace = true;
        opts.preserve_proto_field_names = true;
        std::string json;
        if (app.got_subcommand("demo")) return demo(client, demo_image);
        if (app.got_subcommand("version")) {
            (void)google::protobuf::util::MessageToJsonString(client.version(), &json, opts);
        } else if (app.got_subcommand("pull")) {
            v1::PullImageRequest req;
            req.mutable_image()->set_image(image);
            (void)google::protobuf::util::MessageToJsonString(
                client.call(&v1::ImageService::Stub::PullImage, "PullImage", req), &json, opts);
        } else if (app.got_subcommand("rmi")) {
            v1::RemoveImageRequest req;
            req.mutable_image()->set_image(image);
            (void)google::protobuf::util::MessageToJsonString(
                client.call(&v1::ImageService::Stub::RemoveImage, "RemoveImage", req), &json, opts);
        } else if (app.got_subcommand("images")) {
            (void)google::protobuf::util::MessageToJsonString(
                client.call(&v1::ImageService::Stub::ListImages, "ListImages", v1::ListImagesRequest()), &json, opts);
        } else {
            (void)google::protobuf::util::MessageToJsonString(client.status(verbose), &json, opts);
        }
        std::cout << json;
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cri-client: %s\n", e.what());
        return 1;
    }
}
