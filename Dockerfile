# rollcall in an image that holds nothing but the binary: FROM scratch.
#
# Build with `make image`: it links the binary statically on the host
# (glibc, static-pie) and copies it in, since no build image can be pulled
# here. getaddrinfo in the static binary reads the /etc/hosts and
# /etc/resolv.conf that Docker writes into every container, so peers'
# names resolve through Docker's embedded DNS without NSS libraries.
#
# Configure with ROLLCALL_* variables or flags; the container's hostname
# picks its entry in the hosts file. `rollcall probe` is the healthcheck.
FROM scratch

COPY target/x86_64-unknown-linux-gnu/release/rollcall /rollcall
# The ready file's directory, writable by the unprivileged user.
COPY --chown=65534:65534 deploy/docker/run/ /run/rollcall/

ENV ROLLCALL_HOSTS=/etc/rollcall/hosts \
    ROLLCALL_READY_FILE=/run/rollcall/ready
# Relative hosts paths (`-h hostsfile.txt`) are read from here.
WORKDIR /etc/rollcall
USER 65534:65534
EXPOSE 7610/udp
HEALTHCHECK --interval=1s --timeout=1s --start-period=10s --retries=3 \
    CMD ["/rollcall", "probe"]
ENTRYPOINT ["/rollcall"]
