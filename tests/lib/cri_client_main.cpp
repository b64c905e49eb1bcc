// cri-client: asks a CRI runtime for its version or status, or pulls, lists
// and removes images, e.g.
//   cri-client --socket /run/crisd-nodes/crisd/crisd.sock version
//   cri-client pull 127.0.0.1:5000/busybox
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>

#include "cri_client.hpp"

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
    app.require_subcommand(1);
    CLI11_PARSE(app, argc, argv);

    try {
        namespace v1 = ::runtime::v1;
        const bool image_cmd = app.got_subcommand("pull") || app.got_subcommand("rmi") || app.got_subcommand("images");
        crisd::test::CriClient client(socket, std::chrono::seconds(image_cmd ? 1800 : 30));
        google::protobuf::util::JsonPrintOptions opts;
        opts.add_whitespace = true;
        opts.preserve_proto_field_names = true;
        std::string json;
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
