# NixOS module: `services.lorad`. Mirrors systemd/lorad.service (Type=notify, watchdog, restart
# policy by exit status, the same hardening) and writes the configuration file from
# `settings`, whose keys are those of docs/configuration.md.
self:
{ config, lib, pkgs, ... }:

let
  cfg = config.services.lorad;
  toml = pkgs.formats.toml { };
  configFile = toml.generate "lorad.toml" cfg.settings;
in
{
  options.services.lorad = {
    enable = lib.mkEnableOption "lorad, multi-LoRA LLM serving with Proof of Attribution";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.lorad;
      defaultText = lib.literalExpression "lorad.packages.\${system}.lorad";
      description = "The lorad package.";
    };

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''
        {
          server.listen = "127.0.0.1:8080";
          adapters.device_bytes = "16GiB";
          receipts.deployment = "/etc/lorad/deployment.json";
          chain.l2_rpc = "https://l2.example:8545";
        }
      '';
      description = ''
        Contents of /etc/lorad/lorad.toml (every key: docs/configuration.md). `home` is set to
        the service's state directory. Validate with `lorad --config /etc/lorad/lorad.toml config check`.
      '';
    };

    nvidia = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Allow the service to open the NVIDIA device nodes.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.lorad.settings.home = lib.mkDefault "/var/lib/lorad";

    environment.etc."lorad/lorad.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    users.users.lorad = {
      isSystemUser = true;
      group = "lorad";
      home = "/var/lib/lorad";
      description = "lorad daemon";
    };
    users.groups.lorad = { };

    systemd.services.lorad = {
      description = "lorad: multi-LoRA LLM serving with Proof of Attribution";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        WatchdogSec = "60s";
        ExecStart = "${cfg.package}/bin/lorad --config /etc/lorad/lorad.toml serve";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        User = "lorad";
        Group = "lorad";
        StateDirectory = "lorad";
        StateDirectoryMode = "0700";
        ConfigurationDirectory = "lorad";
        Restart = "on-failure";
        RestartSec = "5s";
        # Usage, data and configuration errors: a restart cannot fix them.
        RestartPreventExitStatus = "2 64 65 78";
        TimeoutStartSec = "15min";
        TimeoutStopSec = "60s";
        LimitMEMLOCK = "infinity";
        LimitNOFILE = 65536;
        DevicePolicy = "closed";
        DeviceAllow = lib.optionals cfg.nvidia [
          "char-nvidiactl rw"
          "char-nvidia-frontend rw"
          "char-nvidia-uvm rw"
          "char-nvidia-caps rw"
        ];
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        SystemCallArchitectures = "native";
        # The adapter store pages with io_uring, which @system-service does not include.
        SystemCallFilter = [ "@system-service" "io_uring_setup" "io_uring_enter" "io_uring_register" ];
        SystemCallErrorNumber = "EPERM";
        UMask = "0077";
      };
    };
  };
}
