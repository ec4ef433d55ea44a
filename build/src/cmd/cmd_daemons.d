build/src/cmd/cmd_daemons.o: src/cmd/cmd_daemons.c src/agent/agent.h \
 src/core/spec.h src/core/util.h src/agent/supervisor.h src/cmd/cli.h \
 src/core/http_client.h src/cmd/commands.h src/core/log.h \
 src/server/server.h src/server/cluster.h src/core/hmap.h \
 src/core/lifecycle.h src/store/store.h
src/agent/agent.h:
src/core/spec.h:
src/core/util.h:
src/agent/supervisor.h:
src/cmd/cli.h:
src/core/http_client.h:
src/cmd/commands.h:
src/core/log.h:
src/server/server.h:
src/server/cluster.h:
src/core/hmap.h:
src/core/lifecycle.h:
src/store/store.h:
