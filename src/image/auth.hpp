// Registry credentials: from the CRI AuthConfig, or from the standard auth
// files that Podman, Skopeo and CRI-O read (containers-auth.json(5)).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace crisd::image {

struct Credentials {
    std::string username;
    std::string password;
    std::string identity_token;  // an OAuth2 refresh token for the token endpoint
    std::string registry_token;  // a bearer token sent as it is
    bool empty() const {
        return username.empty() && password.empty() && identity_token.empty() && registry_token.empty();
    }
};

// "dXNlcjpwYXNz" -> {user, pass}; throws InvalidArgument when malformed.
Credentials decode_auth(const std::string& base64);

std::string base64_encode(const std::string& in);

// The auth files to look in, in order: `global` (crisd.image.global_auth_file)
// when set, else $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json,
// /run/containers/<uid>/auth.json, $HOME/.docker/config.json.
std::vector<std::string> auth_files(const std::string& global);

// Looks `name` ("registry/repo/path") up in one auth file's text: the most
// specific key wins ("reg/a/b", "reg/a", "reg", "https://reg/v1/" forms).
std::optional<Credentials> lookup_auth(const std::string& json_text, const std::string& name);

// The first match in `files` (missing files are skipped; a malformed one is
// logged and skipped).
std::optional<Credentials> find_credentials(const std::vector<std::string>& files, const std::string& name);

}  // namespace crisd::image
