build/src/agent/agent.o: src/agent/agent.c src/agent/agent.h \
 src/core/spec.h src/core/util.h src/agent/supervisor.h src/core/addr.h \
 src/core/hmap.h src/core/http_client.h src/core/lifecycle.h \
 src/core/log.h
src/agent/agent.h:
src/core/spec.h:
src/core/util.h:
src/agent/supervisor.h:
src/core/addr.h:
src/core/hmap.h:
src/core/http_client.h:
src/core/lifecycle.h:
src/core/log.h:
