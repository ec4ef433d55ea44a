build/src/core/http_client.o: src/core/http_client.c \
 src/core/http_client.h src/core/util.h src/core/addr.h
src/core/http_client.h:
src/core/util.h:
src/core/addr.h:
