//! no_std TCP/IP glue: smoltcp over a NIC trait, DHCPv4/static IPv4, embedded-io TCP streams
