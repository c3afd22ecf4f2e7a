// scripts/sendmmsg-ceiling.c: the kernel's ceiling for 1->N UDP fan-out on this machine,
// without the relay (BENCHMARKS.md, "Relay fan-out: ours beside rtpengine").
// One sender thread sends 1,212-byte datagrams (12-byte header + shared 1,200-byte body
// gathered, as the relay does) to N loopback sinks that another thread drains, and prints
// datagrams per sender CPU-second (thread CPU time).
//   cc -O2 -pthread -o /tmp/ceiling scripts/sendmmsg-ceiling.c
//   /tmp/ceiling N K SECONDS [PMTU_DO] [NO_SINK]
//     K = 1: plain sendmmsg, 1,024 messages per call to rotating destinations;
//     K > 1: UDP GSO, each message K segments to one destination.
//   GRO=1 /tmp/ceiling ...: sinks with UDP_GRO (segmentation not charged to the sender, as
//   with a NIC doing USO). Sinks bind 127.0.1.1 upwards (250 per /24).
// Measured here (2026-11-22): N=1000 K=1: 291-335k/CPU-s; K=8: 0.85 M; K=32: 1.1-1.4 M;
// GRO sinks K=8: 1.8 M, K=32: 4.8 M.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <arpa/inet.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
static int N, K, DUR, PMTU, NOSINK;
static int *sinks;
static struct sockaddr_in *addrs;
static volatile int stop;
static long received;
static double busy(void){FILE*f=fopen("/proc/stat","r");long u,n,s,i,w,q,sq,st;fscanf(f,"cpu %ld %ld %ld %ld %ld %ld %ld %ld",&u,&n,&s,&i,&w,&q,&sq,&st);fclose(f);return (u+n+s+q+sq)/100.0;}
static double dcpu;
static double tcpu(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec/1e9;}
static double wall(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static void *drain(void *a){(void)a;char buf[65536];long r=0;while(!stop){for(int i=0;i<N;i++){while(recv(sinks[i],buf,sizeof buf,MSG_DONTWAIT)>0)r++;}}received=r;dcpu=tcpu();return 0;}
int main(int argc,char**argv){
  N=atoi(argv[1]); K=atoi(argv[2]); DUR=atoi(argv[3]); PMTU=argc>4?atoi(argv[4]):0; NOSINK=argc>5?atoi(argv[5]):0;
  sinks=calloc(N,sizeof(int)); addrs=calloc(N,sizeof *addrs);
  for(int i=0;i<N;i++){int s=socket(AF_INET,SOCK_DGRAM,0);struct sockaddr_in a={0};a.sin_family=AF_INET;
    a.sin_addr.s_addr=htonl(0x7f000101+ (i/250)*256 + i%250 - 0); a.sin_port=0; int rb=4<<20; setsockopt(s,SOL_SOCKET,SO_RCVBUF,&rb,4); if(getenv("GRO")){int one=1; if(setsockopt(s,SOL_UDP,104,&one,4))perror("gro");}
    if(bind(s,(void*)&a,sizeof a)){perror("bind");return 1;} socklen_t l=sizeof a; getsockname(s,(void*)&a,&l); sinks[i]=s; addrs[i]=a;}
  int tx=socket(AF_INET,SOCK_DGRAM,0); int sb=4<<20; setsockopt(tx,SOL_SOCKET,SO_SNDBUF,&sb,4);
  if(PMTU){int v=IP_PMTUDISC_DO; setsockopt(tx,IPPROTO_IP,IP_MTU_DISCOVER,&v,4);}
  pthread_t th; if(!NOSINK) pthread_create(&th,0,drain,0);
  enum{SEG=1212, MAXM=1024};
  static char hdr[MAXM*64][12]; static char body[1200];
  memset(body,0x88,sizeof body);
  struct mmsghdr *m=calloc(MAXM,sizeof *m); struct iovec *iov=calloc(MAXM*64*2,sizeof *iov);
  char (*cm)[CMSG_SPACE(2)]=calloc(MAXM,CMSG_SPACE(2));
  // K==1: plain sendmmsg, 1024 messages to rotating destinations. K>1: GSO, each message K segments to one dest.
  int msgs = K==1 ? MAXM : (MAXM*2/(2*K) < 64 ? MAXM*2/(2*K) : 64);
  if (msgs<1) msgs=1;
  long sent=0, fail=0; int d=0;
  double c0=tcpu(), w0=wall(), b0=busy();
  while(wall()-w0<DUR){
    for(int j=0;j<msgs;j++){
      struct msghdr *h=&m[j].msg_hdr; memset(h,0,sizeof *h);
      h->msg_name=&addrs[d]; h->msg_namelen=sizeof addrs[d]; d=(d+1)%N;
      h->msg_iov=&iov[j*K*2]; h->msg_iovlen=K*2;
      for(int k=0;k<K;k++){iov[j*K*2+2*k].iov_base=hdr[j*K+k];iov[j*K*2+2*k].iov_len=12;iov[j*K*2+2*k+1].iov_base=body;iov[j*K*2+2*k+1].iov_len=1200;}
      if(K>1){h->msg_control=cm[j];h->msg_controllen=CMSG_SPACE(2);struct cmsghdr*c=CMSG_FIRSTHDR(h);c->cmsg_level=SOL_UDP;c->cmsg_type=UDP_SEGMENT;c->cmsg_len=CMSG_LEN(2);*(unsigned short*)CMSG_DATA(c)=SEG;}
    }
    int r=sendmmsg(tx,m,msgs,MSG_DONTWAIT);
    if(r<0){fail++; if(errno!=EAGAIN&&errno!=ENOBUFS){perror("sendmmsg");return 1;} continue;}
    sent+= (long)r*K;
  }
  double c=tcpu()-c0, w=wall()-w0, b=busy()-b0; stop=1; if(!NOSINK) pthread_join(th,0);
  double other=b-c-(NOSINK?0:w);
  printf("N=%d K=%d pmtu_do=%d: %ld datagrams in %.2fs wall, sender cpu %.2fs -> %.0f datagrams per CPU-s, %.0f/s wall; received %ld (%.1f%%), eagain calls %ld; machine busy %.2fs, other (softirqd) %.2fs -> %.0f datagrams per (sender+softirqd) CPU-s\n",
    N,K,PMTU,sent,w,c,sent/c,sent/w,received,100.0*received/(sent?sent:1),fail,b,other,sent/(c+other));
  return 0;}
